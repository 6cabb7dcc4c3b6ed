package codec

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/wire"
)

// controlCase is one control message in both encodings: ours, and the
// generated code's message with the same fields.
type controlCase struct {
	name string
	ours func() []byte
	pb   proto.Message
	// same decodes b with our decoder and reports whether it gives the
	// fields of pb.
	same func(t *testing.T, b []byte) bool
}

func controlCases() []controlCase {
	nonce := bytes.Repeat([]byte{7}, 32)
	challenge := AuthChallenge{Nonce: nonce, Versions: []uint32{1, 300}}
	request := AuthRequest{InstanceID: "ns:process:echo-1", ClientNonce: []byte("cn"), Proof: []byte("proof")}
	response := AuthResponse{SessionID: "s", Features: []string{"stream", ""}, ServerProof: []byte("p"), HeartbeatIntervalMs: 5000, MaxPayload: 1 << 24}
	signal := Signal{Kind: SignalCustom, Name: "reload", Data: []byte{0, 1}}
	return []controlCase{
		{"AuthChallenge", func() []byte { return AppendAuthChallenge(nil, &challenge) },
			&spearpb.AuthChallenge{Nonce: nonce, Versions: challenge.Versions},
			func(t *testing.T, b []byte) bool {
				m, err := DecodeAuthChallenge(b)
				return err == nil && bytes.Equal(m.Nonce, nonce) && slices.Equal(m.Versions, challenge.Versions)
			}},
		{"AuthChallenge empty", func() []byte { return AppendAuthChallenge(nil, &AuthChallenge{}) },
			&spearpb.AuthChallenge{},
			func(t *testing.T, b []byte) bool {
				m, err := DecodeAuthChallenge(b)
				return err == nil && m.Nonce == nil && m.Versions == nil
			}},
		{"AuthRequest", func() []byte { return AppendAuthRequest(nil, &request) },
			&spearpb.AuthRequest{InstanceId: request.InstanceID, ClientNonce: request.ClientNonce, Proof: request.Proof},
			func(t *testing.T, b []byte) bool {
				m, err := DecodeAuthRequest(b)
				return err == nil && m.InstanceID == request.InstanceID && bytes.Equal(m.ClientNonce, request.ClientNonce) && bytes.Equal(m.Proof, request.Proof)
			}},
		{"AuthResponse", func() []byte { return AppendAuthResponse(nil, &response) },
			&spearpb.AuthResponse{SessionId: "s", Features: response.Features, ServerProof: []byte("p"), HeartbeatIntervalMs: 5000, MaxPayload: 1 << 24},
			func(t *testing.T, b []byte) bool {
				m, err := DecodeAuthResponse(b)
				return err == nil && m.SessionID == "s" && slices.Equal(m.Features, response.Features) && string(m.ServerProof) == "p" &&
					m.HeartbeatIntervalMs == 5000 && m.MaxPayload == 1<<24
			}},
		{"Signal", func() []byte { return AppendSignal(nil, &signal) },
			&spearpb.Signal{Kind: spearpb.SignalKind_SIGNAL_KIND_CUSTOM, Name: "reload", Data: []byte{0, 1}},
			func(t *testing.T, b []byte) bool {
				m, err := DecodeSignal(b)
				return err == nil && m.Kind == SignalCustom && m.Name == "reload" && bytes.Equal(m.Data, []byte{0, 1})
			}},
		{"Signal negative kind", func() []byte { return AppendSignal(nil, &Signal{Kind: -2}) },
			&spearpb.Signal{Kind: -2},
			func(t *testing.T, b []byte) bool {
				m, err := DecodeSignal(b)
				return err == nil && m.Kind == -2
			}},
		{"Error", func() []byte { return AppendError(nil, spear.CodeNotFound, "gone") },
			&spearpb.Error{Code: uint32(spear.CodeNotFound), Message: "gone"},
			func(t *testing.T, b []byte) bool {
				e, err := DecodeError(b)
				return err == nil && e.Code == spear.CodeNotFound && e.Message == "gone"
			}},
		{"Close", func() []byte { return AppendClose(nil, spear.CodeUnavailable, "bye") },
			&spearpb.Close{Code: uint32(spear.CodeUnavailable), Reason: "bye"},
			func(t *testing.T, b []byte) bool {
				code, reason, err := DecodeClose(b)
				return err == nil && code == spear.CodeUnavailable && reason == "bye"
			}},
	}
}

// Our encoding is the generated code's, byte for byte, and each decoder
// reads what the generated code writes.
func TestControlMatchesProto(t *testing.T) {
	for _, c := range controlCases() {
		t.Run(c.name, func(t *testing.T) {
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.pb)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.ours(); !bytes.Equal(got, want) {
				t.Errorf("encoded %x, the generated code gives %x", got, want)
			}
			if !c.same(t, want) {
				t.Errorf("decoding %x did not give the generated message's fields", want)
			}
		})
	}
}

func TestControlUnpackedVersions(t *testing.T) {
	// proto accepts a repeated scalar unpacked too; so must we.
	b := []byte{0x10, 1, 0x10, 2}
	m, err := DecodeAuthChallenge(b)
	if err != nil || !slices.Equal(m.Versions, []uint32{1, 2}) {
		t.Fatalf("got %v, %v", m.Versions, err)
	}
}

func TestControlStringsAreUTF8(t *testing.T) {
	// An error text may quote anything; a proto3 peer refuses a message
	// whose string is not UTF-8.
	var e spearpb.Error
	if err := proto.Unmarshal(AppendError(nil, spear.CodeInternal, "bad \xff byte"), &e); err != nil || e.Message != "bad \uFFFD byte" {
		t.Fatalf("got %q, %v", e.Message, err)
	}
	var r spearpb.AuthResponse
	if err := proto.Unmarshal(AppendAuthResponse(nil, &AuthResponse{Features: []string{"\xfe"}}), &r); err != nil {
		t.Fatal(err)
	}
}

func TestControlMalformed(t *testing.T) {
	decoders := map[string]func([]byte) error{
		"AuthChallenge": func(b []byte) error { _, err := DecodeAuthChallenge(b); return err },
		"AuthRequest":   func(b []byte) error { _, err := DecodeAuthRequest(b); return err },
		"AuthResponse":  func(b []byte) error { _, err := DecodeAuthResponse(b); return err },
		"Signal":        func(b []byte) error { _, err := DecodeSignal(b); return err },
		"Error":         func(b []byte) error { _, err := DecodeError(b); return err },
		"Close":         func(b []byte) error { _, _, err := DecodeClose(b); return err },
	}
	for name, decode := range decoders {
		for _, b := range [][]byte{{0x0a, 5, 'a'}, {0x08}, {0xff, 0xff}, {0x12, 2, 0x80, 0x80}} {
			if name != "AuthChallenge" && b[0] == 0x12 {
				continue // field 2 is packed varints only in AuthChallenge
			}
			err := decode(b)
			if !errors.Is(err, spear.ErrInvalidMessage) {
				t.Errorf("%s %x: %v, want ErrInvalidMessage", name, b, err)
			}
			// A malformed payload is the peer's fault, to be told about,
			// never mistaken for a frame cut short.
			if _, ok := Refusal(err); !ok {
				t.Errorf("%s %x: no refusal for %v", name, b, err)
			}
		}
	}
}

func TestFrameError(t *testing.T) {
	if err := FrameError(wire.Frame{Type: wire.TypeExecuteResponse}); err != nil {
		t.Errorf("not an ERROR frame: %v", err)
	}
	err := FrameError(*ErrorFrame(3, spear.CodeDeadlineExceeded, "late"))
	var re *spear.RemoteError
	if !errors.As(err, &re) || re.Code != spear.CodeDeadlineExceeded || re.Message != "late" || !errors.Is(err, spear.ErrTimeout) {
		t.Errorf("got %v", err)
	}
	if err := FrameError(wire.Frame{Type: wire.TypeError, Payload: []byte{0x08}}); !errors.Is(err, spear.ErrInvalidMessage) {
		t.Errorf("undecodable ERROR: %v", err)
	}
}

func TestRefusal(t *testing.T) {
	for _, tt := range []struct {
		err  error
		code spear.Code
		ok   bool
	}{
		{&wire.VersionError{Got: 2}, spear.CodeUnsupportedVersion, true},
		{&wire.FrameTooLargeError{Length: 10, Max: 5}, spear.CodeTooLarge, true},
		{spear.ErrInvalidMessage, spear.CodeInvalidMessage, true},
		{spear.ErrChannelClosed, 0, false},
	} {
		f, ok := Refusal(tt.err)
		if ok != tt.ok {
			t.Errorf("%v: refusal %v, want %v", tt.err, ok, tt.ok)
			continue
		}
		if ok {
			re, err := DecodeError(f.Payload)
			if err != nil || re.Code != tt.code || f.Type != wire.TypeError || f.ID != 0 {
				t.Errorf("%v: refusal %+v %v, want ERROR %s", tt.err, f, re, tt.code)
			}
		}
	}
}

// FuzzDecodeControl checks every control decoder against the generated
// code on arbitrary input: what proto accepts we accept, with the same
// fields. (Like proto we skip unknown fields; unlike it we do not check
// that strings are UTF-8, so we may take what it refuses.)
func FuzzDecodeControl(f *testing.F) {
	for _, c := range controlCases() {
		f.Add(c.ours())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ch spearpb.AuthChallenge
		if proto.Unmarshal(b, &ch) == nil {
			m, err := DecodeAuthChallenge(b)
			if err != nil || !bytes.Equal(m.Nonce, ch.Nonce) || !slices.Equal(m.Versions, ch.Versions) {
				t.Fatalf("AuthChallenge: %+v %v, proto %v", m, err, &ch)
			}
		}
		var req spearpb.AuthRequest
		if proto.Unmarshal(b, &req) == nil {
			m, err := DecodeAuthRequest(b)
			if err != nil || m.InstanceID != req.InstanceId || !bytes.Equal(m.ClientNonce, req.ClientNonce) || !bytes.Equal(m.Proof, req.Proof) {
				t.Fatalf("AuthRequest: %+v %v, proto %v", m, err, &req)
			}
		}
		var resp spearpb.AuthResponse
		if proto.Unmarshal(b, &resp) == nil {
			m, err := DecodeAuthResponse(b)
			if err != nil || m.SessionID != resp.SessionId || !slices.Equal(m.Features, resp.Features) || !bytes.Equal(m.ServerProof, resp.ServerProof) ||
				m.HeartbeatIntervalMs != resp.HeartbeatIntervalMs || m.MaxPayload != resp.MaxPayload {
				t.Fatalf("AuthResponse: %+v %v, proto %v", m, err, &resp)
			}
		}
		var sig spearpb.Signal
		if proto.Unmarshal(b, &sig) == nil {
			m, err := DecodeSignal(b)
			if err != nil || int32(m.Kind) != int32(sig.Kind) || m.Name != sig.Name || !bytes.Equal(m.Data, sig.Data) {
				t.Fatalf("Signal: %+v %v, proto %v", m, err, &sig)
			}
		}
		var e spearpb.Error
		if proto.Unmarshal(b, &e) == nil {
			re, err := DecodeError(b)
			if err != nil || uint32(re.Code) != e.Code || re.Message != e.Message {
				t.Fatalf("Error: %+v %v, proto %v", re, err, &e)
			}
		}
	})
}
