package codec

import (
	"bytes"
	"errors"
	"maps"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/wire"
)

// The hand-written encoding must match the generated code byte for byte in
// meaning, both ways.
func TestExecuteRequestMatchesProto(t *testing.T) {
	cases := []ExecuteRequest{
		{},
		{Method: "upper", Payload: []byte("hello"), TimeoutMs: 1500},
		{Payload: bytes.Repeat([]byte{0xff}, 70000), Metadata: map[string]string{"a": "1", "": "empty key", "b": ""}},
	}
	for _, c := range cases {
		var pb spearpb.ExecuteRequest
		if err := proto.Unmarshal(AppendExecuteRequest(nil, &c), &pb); err != nil {
			t.Fatal(err)
		}
		if pb.Method != c.Method || !bytes.Equal(pb.Payload, c.Payload) || pb.TimeoutMs != c.TimeoutMs || !sameMap(pb.Metadata, c.Metadata) {
			t.Errorf("proto decoded %+v from %+v", &pb, c)
		}
		b, err := proto.Marshal(&spearpb.ExecuteRequest{Method: c.Method, Payload: c.Payload, TimeoutMs: c.TimeoutMs, Metadata: c.Metadata})
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeExecuteRequest(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Method != c.Method || !bytes.Equal(got.Payload, c.Payload) || got.TimeoutMs != c.TimeoutMs || !sameMap(got.Metadata, c.Metadata) {
			t.Errorf("decoded %+v, want %+v", got, c)
		}
	}
}

func TestExecuteResponseMatchesProto(t *testing.T) {
	md := map[string]string{"k": "v"}
	b, _ := proto.Marshal(&spearpb.ExecuteResponse{Payload: []byte("out"), Metadata: md})
	p, m, err := DecodeExecuteResponse(b)
	if err != nil || string(p) != "out" || !sameMap(m, md) {
		t.Fatalf("decoded %q %v %v", p, m, err)
	}
	var pb spearpb.ExecuteResponse
	if err := proto.Unmarshal(AppendExecuteResponse(nil, []byte("out"), md), &pb); err != nil || string(pb.Payload) != "out" || !sameMap(pb.Metadata, md) {
		t.Fatalf("proto decoded %+v %v", &pb, err)
	}
}

func TestUnknownFieldsSkipped(t *testing.T) {
	// A newer peer's extra fields (a fixed64 and a string) are ignored.
	b := AppendExecuteRequest(nil, &ExecuteRequest{Method: "m"})
	b = append(b, 0x49, 1, 2, 3, 4, 5, 6, 7, 8) // field 9, fixed64
	b = append(b, 0x52, 2, 'h', 'i')            // field 10, bytes
	got, err := DecodeExecuteRequest(b)
	if err != nil || got.Method != "m" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestMalformed(t *testing.T) {
	for i, b := range [][]byte{{0x12, 5, 'a'}, {0x0a}, {0x18, 0x80}, {0x22, 2, 0x0a, 9}} {
		if _, err := DecodeExecuteRequest(b); !errors.Is(err, spear.ErrInvalidMessage) {
			t.Errorf("%x: err %v, want ErrInvalidMessage", b, err)
		}
		if i == 3 {
			continue // field 4 is not a response field: skipped unparsed, as proto does
		}
		if _, _, err := DecodeExecuteResponse(b); !errors.Is(err, spear.ErrInvalidMessage) {
			t.Errorf("%x: response err %v, want ErrInvalidMessage", b, err)
		}
	}
}

func FuzzDecodeExecuteRequest(f *testing.F) {
	f.Add(AppendExecuteRequest(nil, &ExecuteRequest{Method: "m", Payload: []byte("p"), TimeoutMs: 7, Metadata: map[string]string{"a": "b"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeExecuteRequest(b)
		var pb spearpb.ExecuteRequest
		perr := proto.Unmarshal(b, &pb)
		// The codec is as strict as proto about structure; it does not
		// check that strings are UTF-8, so proto may refuse what it takes.
		if err != nil && perr == nil {
			t.Fatalf("codec err %v, proto accepted", err)
		}
		if perr != nil {
			return
		}
		if err == nil && (got.Method != pb.Method || !bytes.Equal(got.Payload, pb.Payload) || got.TimeoutMs != pb.TimeoutMs) {
			t.Fatalf("codec %+v, proto %+v", got, &pb)
		}
	})
}

func TestPoolDropsHugeBuffers(t *testing.T) {
	b := Buffer()
	*b = make([]byte, 0, maxPooled+1)
	Release(b)
	if c := cap(*Buffer()); c > maxPooled {
		t.Fatalf("pool kept a %d-byte buffer", c)
	}
}

func sameMap(a, b map[string]string) bool {
	return len(a) == len(b) && (len(a) == 0 || maps.Equal(a, b))
}

// The split layout carries the same request and answer as the unsplit
// one, with the payload beside the envelope and never inside it.
func TestSplitLayout(t *testing.T) {
	in := ExecuteRequest{Method: "echo", Payload: []byte("hello"), TimeoutMs: 1500, Metadata: map[string]string{"k": "v"}}
	for _, split := range []bool{false, true} {
		var f wire.Frame
		PutExecuteRequest(&f, nil, &in, split)
		if split != (f.Flags&wire.FlagSplit != 0) || split != (f.Body != nil) {
			t.Fatalf("split %v: flags %v, body %q", split, f.Flags, f.Body)
		}
		if split && &f.Body[0] != &in.Payload[0] {
			t.Error("the split request's body is a copy of the payload")
		}
		got := wire.Frame{Type: f.Type, Flags: f.Flags, Payload: append(bytes.Clone(f.Payload), f.Body...)} // as received
		r, err := ExecuteRequestOf(&got)
		if err != nil || r.Method != in.Method || !bytes.Equal(r.Payload, in.Payload) || r.TimeoutMs != in.TimeoutMs || !maps.Equal(r.Metadata, in.Metadata) {
			t.Errorf("split %v: %+v, %v", split, r, err)
		}
		var a wire.Frame
		PutExecuteResponse(&a, nil, []byte("answer"), map[string]string{"x": "y"}, split)
		gotA := wire.Frame{Type: a.Type, Flags: a.Flags, Payload: append(bytes.Clone(a.Payload), a.Body...)}
		p, md, err := ExecuteResponseOf(&gotA)
		if err != nil || string(p) != "answer" || md["x"] != "y" {
			t.Errorf("split %v: answer %q %v %v", split, p, md, err)
		}
	}
}

func TestSplitMalformed(t *testing.T) {
	withPayload := AppendExecuteRequest(nil, &ExecuteRequest{Payload: []byte("in the envelope")})
	for name, b := range map[string][]byte{
		"short":               {0, 0, 0},
		"envelope too long":   {0, 0, 0, 9, 1, 2},
		"payload in envelope": append([]byte{0, 0, 0, byte(len(withPayload))}, withPayload...),
	} {
		f := wire.Frame{Type: wire.TypeExecuteRequest, Flags: wire.FlagSplit, Payload: b}
		if _, err := ExecuteRequestOf(&f); !errors.Is(err, spear.ErrInvalidMessage) {
			t.Errorf("request %s: %v, want ErrInvalidMessage", name, err)
		}
		f.Type = wire.TypeExecuteResponse
		if _, _, err := ExecuteResponseOf(&f); !errors.Is(err, spear.ErrInvalidMessage) && name != "payload in envelope" {
			t.Errorf("response %s: %v, want ErrInvalidMessage", name, err)
		}
	}
	// The request's payload field is not the response's: refuse the
	// response's own, even empty.
	for _, env := range [][]byte{AppendExecuteResponse(nil, []byte("in the envelope"), nil), {0x0a, 0}} {
		f := wire.Frame{Type: wire.TypeExecuteResponse, Flags: wire.FlagSplit, Payload: append([]byte{0, 0, 0, byte(len(env))}, env...)}
		if _, _, err := ExecuteResponseOf(&f); !errors.Is(err, spear.ErrInvalidMessage) {
			t.Errorf("response with payload field %x in its envelope: %v, want ErrInvalidMessage", env, err)
		}
	}
}

// FuzzSplitExecuteRequest: a split payload decodes to the same request as
// its envelope does, with the body as the payload, or fails cleanly.
func FuzzSplitExecuteRequest(f *testing.F) {
	var fr wire.Frame
	PutExecuteRequest(&fr, nil, &ExecuteRequest{Method: "m", Payload: []byte("p"), TimeoutMs: 7}, true)
	f.Add(append(bytes.Clone(fr.Payload), fr.Body...))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ExecuteRequestOf(&wire.Frame{Flags: wire.FlagSplit, Payload: b})
		if err != nil {
			return
		}
		n := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		env, err := DecodeExecuteRequest(b[4 : 4+n])
		if err != nil || env.Method != r.Method || env.TimeoutMs != r.TimeoutMs || !bytes.Equal(r.Payload, b[4+n:]) {
			t.Fatalf("split %+v, envelope %+v (%v)", r, env, err)
		}
	})
}
