package guest

import (
	"bytes"
	"errors"
	"maps"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/proto/spearpb"
)

// The hand-written codec must agree with the generated one, both ways.

func TestDecodeMatchesSpearpb(t *testing.T) {
	b, _ := proto.Marshal(&spearpb.ExecuteRequest{Method: "m", Payload: []byte{0, 1}, TimeoutMs: 1500,
		Metadata: map[string]string{"k": "v", "empty": ""}})
	r, err := decodeExecuteRequest(b)
	if err != nil || r.method != "m" || !bytes.Equal(r.payload, []byte{0, 1}) || r.timeoutMs != 1500 ||
		!maps.Equal(r.metadata, map[string]string{"k": "v", "empty": ""}) {
		t.Errorf("ExecuteRequest: %+v, %v", r, err)
	}

	b, _ = proto.Marshal(&spearpb.Signal{Kind: spearpb.SignalKind_SIGNAL_KIND_PAUSE, Name: "n", Data: []byte("d")})
	if s, err := decodeSignal(b); err != nil || s.kind != signalPause || s.name != "n" {
		t.Errorf("Signal: %+v, %v", s, err)
	}

	nonce := bytes.Repeat([]byte{7}, nonceSize)
	b, _ = proto.Marshal(&spearpb.AuthChallenge{Nonce: nonce, Versions: []uint32{1, 2}})
	if got, err := authChallengeNonce(b); err != nil || !bytes.Equal(got, nonce) {
		t.Errorf("AuthChallenge: %x, %v", got, err)
	}

	b, _ = proto.Marshal(&spearpb.AuthResponse{SessionId: "s", Features: []string{"f"}, ServerProof: []byte("p"),
		HeartbeatIntervalMs: 5, MaxPayload: 9})
	if r, err := decodeAuthResponse(b); err != nil || r.sessionID != "s" || string(r.serverProof) != "p" {
		t.Errorf("AuthResponse: %+v, %v", r, err)
	}

	b, _ = proto.Marshal(&spearpb.Error{Code: uint32(spear.CodeNotFound), Message: "gone"})
	if e := decodeError(b); e.Code != spear.CodeNotFound || e.Message != "gone" {
		t.Errorf("Error: %+v", e)
	}
}

func TestEncodeMatchesSpearpb(t *testing.T) {
	var resp spearpb.ExecuteResponse
	if err := proto.Unmarshal(encodeExecuteResponse([]byte("out")), &resp); err != nil || string(resp.Payload) != "out" {
		t.Errorf("ExecuteResponse: %v, %v", &resp, err)
	}
	var e spearpb.Error
	// Invalid UTF-8 in a message would make the whole frame undecodable.
	if err := proto.Unmarshal(encodeError(spear.CodeInternal, "bad \xff byte"), &e); err != nil ||
		e.Code != uint32(spear.CodeInternal) || e.Message != "bad \uFFFD byte" {
		t.Errorf("Error: %v, %v", &e, err)
	}
	var req spearpb.AuthRequest
	if err := proto.Unmarshal(encodeAuthRequest("wasm:x", []byte("cn"), []byte("pr")), &req); err != nil ||
		req.InstanceId != "wasm:x" || string(req.ClientNonce) != "cn" || string(req.Proof) != "pr" {
		t.Errorf("AuthRequest: %v, %v", &req, err)
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{{0xff}, {0x0a, 0x05, 'a'}, {0x08}} {
		if _, err := decodeExecuteRequest(b); !errors.Is(err, spear.ErrInvalidMessage) {
			t.Errorf("%x: %v", b, err)
		}
	}
}

func TestProofMatchesAuth(t *testing.T) {
	secret, nonce, cn := []byte("secret"), []byte("nonce"), []byte("client")
	for _, role := range []string{roleInstance, roleAgent} {
		if !bytes.Equal(proof(secret, role, nonce, cn, "wasm:x"), auth.Proof(secret, role, nonce, cn, "wasm:x")) {
			t.Errorf("proof for %q differs from internal/auth", role)
		}
	}
}

func FuzzDecodeExecuteRequest(f *testing.F) {
	b, _ := proto.Marshal(&spearpb.ExecuteRequest{Method: "m", Payload: []byte("p"), TimeoutMs: 3, Metadata: map[string]string{"a": "b"}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeExecuteRequest(b)
		if err != nil {
			return
		}
		// What the guest accepts, the generated decoder reads alike (where
		// it accepts it: it also checks UTF-8).
		var want spearpb.ExecuteRequest
		if proto.Unmarshal(b, &want) != nil {
			return
		}
		if got.method != want.Method || !bytes.Equal(got.payload, want.Payload) || got.timeoutMs != want.TimeoutMs {
			t.Errorf("guest %+v, spearpb %v", got, &want)
		}
	})
}
