package auth_test

import (
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/wire"
)

// The worked example of docs/protocol.md, "Several connections": the
// handshake of the first example made by the instance's second connection
// (index 1, of an instance that can hold 16), the agent asking for two,
// and the CONNECTIONS signal that later asks for three.
const (
	vecSlotRequest  = "0000005f0102000000000000000000000a1574656e616e742d613a70726f636573733a666e2d311220c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf1a204d0f6bbae8d9f8c6f3453a1dcee2e56ff4ce98ba48ea22ddd6ff296ab58988e320012810"
	vecSlotResponse = "000000380103000000000000000000000a027331120673747265616d1a207c2afb32f7a29ad7dd866fc24ecc07703c30cf8ca23875c6a1508196b0e6f7e820882728808080083002"
	vecConnSignal   = "00000004010700000000000000000007" + "08052003"
)

func TestConnectionsVector(t *testing.T) {
	secret, nonce, clientNonce := run32(0x00), run32(0xa0), run32(0xc0)
	proof := auth.Proof(secret, "spear-auth-v1 instance", nonce, clientNonce, vecID)
	serverProof := auth.Proof(secret, "spear-auth-v1 agent", nonce, clientNonce, vecID)
	frame := func(ty wire.Type, id uint64, payload []byte) string {
		return hex.EncodeToString(wire.AppendFrame(nil, &wire.Frame{Type: ty, ID: id, Payload: payload}))
	}
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	req := &spearpb.AuthRequest{InstanceId: vecID, ClientNonce: clientNonce, Proof: proof, Connection: 1, MaxConnections: 16}
	resp := &spearpb.AuthResponse{SessionId: "s1", Features: []string{"stream"}, ServerProof: serverProof,
		HeartbeatIntervalMs: 5000, MaxPayload: 16 << 20, Connections: 2}
	sig := &spearpb.Signal{Kind: spearpb.SignalKind_SIGNAL_KIND_CONNECTIONS, Connections: 3}
	for _, c := range []struct{ name, got, want string }{
		{"AUTH_REQUEST (protobuf)", frame(wire.TypeAuthRequest, 0, marshal(req)), vecSlotRequest},
		{"AUTH_REQUEST (codec)", frame(wire.TypeAuthRequest, 0, codec.AppendAuthRequest(nil, &codec.AuthRequest{
			InstanceID: vecID, ClientNonce: clientNonce, Proof: proof, Connection: 1, MaxConnections: 16})), vecSlotRequest},
		{"AUTH_RESPONSE (protobuf)", frame(wire.TypeAuthResponse, 0, marshal(resp)), vecSlotResponse},
		{"AUTH_RESPONSE (codec)", frame(wire.TypeAuthResponse, 0, codec.AppendAuthResponse(nil, &codec.AuthResponse{
			SessionID: "s1", Features: []string{"stream"}, ServerProof: serverProof, HeartbeatIntervalMs: 5000,
			MaxPayload: 16 << 20, Connections: 2})), vecSlotResponse},
		{"SIGNAL (protobuf)", frame(wire.TypeSignal, 7, marshal(sig)), vecConnSignal},
		{"SIGNAL (codec)", frame(wire.TypeSignal, 7, codec.AppendSignal(nil, &codec.Signal{Kind: codec.SignalConnections, Connections: 3})), vecConnSignal},
	} {
		if c.got != c.want {
			t.Errorf("%s\n got %s\nwant %s", c.name, c.got, c.want)
		}
	}
	// An older decoder skips the new fields: the first example's request
	// decodes the same, with index 0.
	old, err := codec.DecodeAuthRequest(mustHex(t, vecRequest)[wire.HeaderSize:])
	if err != nil || old.Connection != 0 || old.MaxConnections != 0 || old.InstanceID != vecID {
		t.Errorf("the first example's request: %+v, %v", old, err)
	}
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(string(doc)), "")
	for _, v := range []string{vecSlotRequest, vecSlotResponse, vecConnSignal} {
		if !strings.Contains(flat, v) {
			t.Errorf("docs/protocol.md does not show %s", v)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
