package conformance_test

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json from the Go implementation")

// vectorsFile holds encodings made by the Go implementation, which the
// Python and TypeScript SDKs' tests decode and reproduce byte for byte:
// the way a new implementation checks its hand-written encoder too.
const vectorsFile = "testdata/vectors.json"

// Vectors is the file's content.
type Vectors struct {
	Comment   string          `json:"comment"`
	Handshake HandshakeVector `json:"handshake"`
	Frames    []FrameVector   `json:"frames"`
}

// HandshakeVector is the worked example of docs/protocol.md, section 9.
type HandshakeVector struct {
	Secret      string `json:"secret"`
	Nonce       string `json:"nonce"`
	ClientNonce string `json:"client_nonce"`
	InstanceID  string `json:"instance_id"`
	Proof       string `json:"proof"`
	ServerProof string `json:"server_proof"`
}

// FrameVector is one frame: its header fields, its payload's decoded
// message (bytes fields in hex), and the whole frame in hex.
type FrameVector struct {
	Name    string         `json:"name"`
	Type    wire.Type      `json:"type"`
	Flags   wire.Flags     `json:"flags"`
	ID      uint64         `json:"id"`
	Message map[string]any `json:"message"`
	Frame   string         `json:"frame"`
}

func bytesN(from byte) []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = from + byte(i)
	}
	return b
}

func frameVector(name string, f wire.Frame, msg map[string]any) FrameVector {
	return FrameVector{Name: name, Type: f.Type, Flags: f.Flags, ID: f.ID, Message: msg, Frame: hex.EncodeToString(wire.AppendFrame(nil, &f))}
}

func marshal(m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// goVectors encodes every vector with the Go implementation.
func goVectors() Vectors {
	secret, nonce, clientNonce := bytesN(0x00), bytesN(0xa0), bytesN(0xc0)
	const id = "tenant-a:process:fn-1"
	proof := auth.Proof(secret, "spear-auth-v1 instance", nonce, clientNonce, id)
	serverProof := auth.Proof(secret, "spear-auth-v1 agent", nonce, clientNonce, id)
	h := hex.EncodeToString
	v := Vectors{
		Comment: "Encodings by the Go implementation (conformance/vectors_test.go; go test ./conformance -run TestVectors -update rewrites this file). Bytes fields are hex.",
		Handshake: HandshakeVector{
			Secret: h(secret), Nonce: h(nonce), ClientNonce: h(clientNonce), InstanceID: id,
			Proof: h(proof), ServerProof: h(serverProof),
		},
	}
	add := func(name string, f wire.Frame, msg map[string]any) {
		v.Frames = append(v.Frames, frameVector(name, f, msg))
	}
	add("auth_challenge", wire.Frame{Type: wire.TypeAuthChallenge,
		Payload: marshal(&spearpb.AuthChallenge{Nonce: nonce, Versions: []uint32{1}})},
		map[string]any{"nonce": h(nonce), "versions": []uint32{1}})
	add("auth_request", wire.Frame{Type: wire.TypeAuthRequest,
		Payload: marshal(&spearpb.AuthRequest{InstanceId: id, ClientNonce: clientNonce, Proof: proof})},
		map[string]any{"instance_id": id, "client_nonce": h(clientNonce), "proof": h(proof)})
	add("auth_request_features", wire.Frame{Type: wire.TypeAuthRequest,
		Payload: marshal(&spearpb.AuthRequest{InstanceId: id, ClientNonce: clientNonce, Proof: proof, Features: []string{wire.FeatureSplit}})},
		map[string]any{"instance_id": id, "client_nonce": h(clientNonce), "proof": h(proof), "features": []string{wire.FeatureSplit}})
	add("auth_response", wire.Frame{Type: wire.TypeAuthResponse,
		Payload: marshal(&spearpb.AuthResponse{SessionId: "s1", Features: []string{"stream", "cancel"}, ServerProof: serverProof, HeartbeatIntervalMs: 5000, MaxPayload: 16 << 20})},
		map[string]any{"session_id": "s1", "features": []string{"stream", "cancel"}, "server_proof": h(serverProof), "heartbeat_interval_ms": 5000, "max_payload": 16 << 20})
	add("execute_request", wire.Frame{Type: wire.TypeExecuteRequest, Flags: wire.FlagStream, ID: 7,
		Payload: codec.AppendExecuteRequest(nil, &codec.ExecuteRequest{Method: "echo", Payload: []byte("hello"), TimeoutMs: 1500, Metadata: map[string]string{"trace": "xyz"}})},
		map[string]any{"method": "echo", "payload": h([]byte("hello")), "timeout_ms": 1500, "metadata": map[string]string{"trace": "xyz"}})
	add("execute_request_empty", wire.Frame{Type: wire.TypeExecuteRequest, ID: 9,
		Payload: codec.AppendExecuteRequest(nil, &codec.ExecuteRequest{})},
		map[string]any{"method": "", "payload": "", "timeout_ms": 0, "metadata": map[string]string{}})
	add("execute_response", wire.Frame{Type: wire.TypeExecuteResponse, ID: 7,
		Payload: codec.AppendExecuteResponse(nil, []byte("hi there"), map[string]string{"k": "v"})},
		map[string]any{"payload": h([]byte("hi there")), "metadata": map[string]string{"k": "v"}})
	add("execute_response_empty", wire.Frame{Type: wire.TypeExecuteResponse, ID: 9,
		Payload: codec.AppendExecuteResponse(nil, nil, nil)},
		map[string]any{"payload": "", "metadata": map[string]string{}})
	// The split layout: a 4-byte envelope length, the envelope (the
	// message without its payload field), then the payload as it is.
	split := func(f wire.Frame) wire.Frame { // Payload and Body as received: one payload
		f.Payload = append(f.Payload, f.Body...)
		f.Body = nil
		return f
	}
	var req, resp wire.Frame
	codec.PutExecuteRequest(&req, nil, &codec.ExecuteRequest{Method: "echo", Payload: []byte("hello"), TimeoutMs: 1500}, true)
	req.ID = 15
	add("execute_request_split", split(req),
		map[string]any{"method": "echo", "payload": h([]byte("hello")), "timeout_ms": 1500, "metadata": map[string]string{}})
	codec.PutExecuteResponse(&resp, nil, []byte("hi there"), nil, true)
	resp.ID = 15
	add("execute_response_split", split(resp),
		map[string]any{"payload": h([]byte("hi there")), "metadata": map[string]string{}})
	add("stream_data_end", wire.Frame{Type: wire.TypeStreamData, Flags: wire.FlagEnd | wire.FlagStream, ID: 0x0102030405060708, Payload: []byte("abc")},
		map[string]any{"data": h([]byte("abc"))})
	add("signal_terminate", wire.Frame{Type: wire.TypeSignal, ID: 3, Payload: marshal(&spearpb.Signal{Kind: spearpb.SignalKind_SIGNAL_KIND_TERMINATE})},
		map[string]any{"kind": 1, "name": "", "data": ""})
	add("signal_custom", wire.Frame{Type: wire.TypeSignal, ID: 5, Payload: marshal(&spearpb.Signal{Kind: spearpb.SignalKind_SIGNAL_KIND_CUSTOM, Name: "reload", Data: []byte{0, 0xff}})},
		map[string]any{"kind": 4, "name": "reload", "data": "00ff"})
	add("error", wire.Frame{Type: wire.TypeError, ID: 11, Payload: marshal(&spearpb.Error{Code: 4, Message: "no method \"x\""})},
		map[string]any{"code": 4, "message": "no method \"x\""})
	add("close", wire.Frame{Type: wire.TypeClose, Payload: marshal(&spearpb.Close{Code: 8, Reason: "instance terminated"})},
		map[string]any{"code": 8, "reason": "instance terminated"})
	add("heartbeat_ack", wire.Frame{Type: wire.TypeHeartbeat, Flags: wire.FlagAck, ID: 42, Payload: []byte("probe")},
		map[string]any{"data": h([]byte("probe"))})
	add("cancel", wire.Frame{Type: wire.TypeCancel, ID: 13}, map[string]any{})
	return v
}

// The vectors file says what the Go implementation encodes.
func TestVectors(t *testing.T) {
	got, err := json.MarshalIndent(goVectors(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile(vectorsFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s is out of date; run go test ./conformance -run TestVectors -update", vectorsFile)
	}
}

// docs/protocol.md's worked example of the split layout shows the bytes of
// the split vectors: the hex tokens that start its lines, frame by frame.
func TestSplitExampleInProtocolDoc(t *testing.T) {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "EXECUTE_REQUEST, flags SPLIT (0x0008)\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("docs/protocol.md has no split example")
	}
	frames := []string{""}
	for _, line := range strings.Split(block, "\n") {
		if strings.HasPrefix(line, "EXECUTE_RESPONSE") {
			frames = append(frames, "")
			continue
		}
		for _, tok := range strings.Fields(line) {
			if _, err := hex.DecodeString(tok); err != nil {
				break // the comment
			}
			frames[len(frames)-1] += tok
		}
	}
	want := map[string]string{}
	for _, f := range goVectors().Frames {
		want[f.Name] = f.Frame
	}
	if len(frames) != 2 || frames[0] != want["execute_request_split"] || frames[1] != want["execute_response_split"] {
		t.Errorf("the example shows %q, the vectors are %q and %q", frames, want["execute_request_split"], want["execute_response_split"])
	}
}
