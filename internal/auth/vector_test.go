package auth_test

import (
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/wire"
)

// The worked example of docs/protocol.md, "Handshake". TestVector checks
// these values against the code and checks that the document still shows
// them, so neither can drift.
const (
	vecID          = "tenant-a:process:fn-1"
	vecMessage     = "73706561722d617574682d763120696e7374616e636500a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf74656e616e742d613a70726f636573733a666e2d31"
	vecProof       = "4d0f6bbae8d9f8c6f3453a1dcee2e56ff4ce98ba48ea22ddd6ff296ab58988e3"
	vecServerProof = "7c2afb32f7a29ad7dd866fc24ecc07703c30cf8ca23875c6a1508196b0e6f7e8"
	vecChallenge   = "000000250101000000000000000000000a20a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf120101"
	vecRequest     = "0000005b0102000000000000000000000a1574656e616e742d613a70726f636573733a666e2d311220c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf1a204d0f6bbae8d9f8c6f3453a1dcee2e56ff4ce98ba48ea22ddd6ff296ab58988e3"
	vecResponse    = "000000360103000000000000000000000a027331120673747265616d1a207c2afb32f7a29ad7dd866fc24ecc07703c30cf8ca23875c6a1508196b0e6f7e82088272880808008"
)

// run32 returns the 32 bytes from, from+1, ..., from+31.
func run32(from byte) []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = from + byte(i)
	}
	return b
}

func TestVector(t *testing.T) {
	secret, nonce, clientNonce := run32(0x00), run32(0xa0), run32(0xc0)

	msg := append([]byte("spear-auth-v1 instance\x00"), nonce...)
	msg = append(append(msg, clientNonce...), vecID...)
	if got := hex.EncodeToString(msg); got != vecMessage {
		t.Errorf("HMAC input\n got %s\nwant %s", got, vecMessage)
	}
	proof := auth.Proof(secret, "spear-auth-v1 instance", nonce, clientNonce, vecID)
	serverProof := auth.Proof(secret, "spear-auth-v1 agent", nonce, clientNonce, vecID)
	for _, c := range []struct{ name, got, want string }{
		{"proof (auth.Proof)", hex.EncodeToString(proof), vecProof},
		{"proof (documented layout)", hex.EncodeToString(docProof(secret, "spear-auth-v1 instance", nonce, clientNonce, vecID)), vecProof},
		{"server proof", hex.EncodeToString(serverProof), vecServerProof},
	} {
		if c.got != c.want {
			t.Errorf("%s\n got %s\nwant %s", c.name, c.got, c.want)
		}
	}

	frame := func(ty wire.Type, m proto.Message) string {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(wire.AppendFrame(nil, &wire.Frame{Type: ty, Payload: b}))
	}
	frames := []struct{ name, got, want string }{
		{"AUTH_CHALLENGE", frame(wire.TypeAuthChallenge, &spearpb.AuthChallenge{Nonce: nonce, Versions: []uint32{1}}), vecChallenge},
		{"AUTH_REQUEST", frame(wire.TypeAuthRequest, &spearpb.AuthRequest{InstanceId: vecID, ClientNonce: clientNonce, Proof: proof}), vecRequest},
		{"AUTH_RESPONSE", frame(wire.TypeAuthResponse, &spearpb.AuthResponse{
			SessionId: "s1", Features: []string{"stream"}, ServerProof: serverProof,
			HeartbeatIntervalMs: 5000, MaxPayload: 16 << 20,
		}), vecResponse},
	}
	for _, c := range frames {
		if c.got != c.want {
			t.Errorf("%s frame\n got %s\nwant %s", c.name, c.got, c.want)
		}
	}

	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatalf("the protocol document is missing: %v", err)
	}
	// The document wraps long hex strings; compare without whitespace.
	flat := strings.Join(strings.Fields(string(doc)), "")
	for _, v := range []string{vecMessage, vecProof, vecServerProof, vecChallenge, vecRequest, vecResponse, vecID} {
		if !strings.Contains(flat, v) {
			t.Errorf("docs/protocol.md no longer shows %s", v)
		}
	}
}
