package guest

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/proto/spearpb"
)

// The hand-written codec must agree with the generated one, both ways.

func TestDecodeMatchesSpearpb(t *testing.T) {
	b, _ := proto.Marshal(&spearpb.Signal{Kind: spearpb.SignalKind_SIGNAL_KIND_PAUSE, Name: "n", Data: []byte("d")})
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

func TestProofMatchesAuth(t *testing.T) {
	secret, nonce, cn := []byte("secret"), []byte("nonce"), []byte("client")
	for _, role := range []string{roleInstance, roleAgent} {
		if !bytes.Equal(proof(secret, role, nonce, cn, "wasm:x"), auth.Proof(secret, role, nonce, cn, "wasm:x")) {
			t.Errorf("proof for %q differs from internal/auth", role)
		}
	}
}
