package grpc

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/proto/transportpb"
	"github.com/spear-go/spear/wire"
)

// The codec writes exactly what the protobuf codec writes for a Frame
// message, and reads it back into a frame, from however many buffers grpc
// hands it.
func TestFrameCodec(t *testing.T) {
	c := frameCodec{maxPayload: wire.DefaultMaxPayload}
	for _, size := range []int{0, 5, 2000, 70000} { // under and over grpc's pooling threshold
		f := &wire.Frame{Type: wire.TypeExecuteResponse, Flags: wire.FlagSplit, ID: 9, Payload: []byte{0, 0, 0, 0}, Body: bytes.Repeat([]byte("b"), size)}
		out, err := c.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		got := out.Materialize()
		want, _ := proto.Marshal(&transportpb.Frame{Data: wire.AppendFrame(nil, f)})
		if !bytes.Equal(got, want) {
			t.Fatalf("size %d: the codec's bytes differ from proto's", size)
		}
		out.Free()
		// Split in three, as grpc may hand a message over.
		parts := mem.BufferSlice{mem.SliceBuffer(got[:3]), mem.SliceBuffer(got[3:20]), mem.SliceBuffer(got[20:])}
		var r received
		if err := c.Unmarshal(parts, &r); err != nil || r.err != nil {
			t.Fatalf("size %d: %v %v", size, err, r.err)
		}
		if r.f.Type != f.Type || r.f.Flags != f.Flags || r.f.ID != 9 || !bytes.Equal(r.f.Payload, append([]byte{0, 0, 0, 0}, f.Body...)) {
			t.Errorf("size %d: decoded %v %v %d, %d payload bytes", size, r.f.Type, r.f.Flags, r.f.ID, len(r.f.Payload))
		}
		r.f.Release()
	}
}

// A message that is not one good frame becomes the frame error the session
// reports to the peer, not an unmarshalling error that would end the
// stream at grpc's level.
func TestFrameCodecRefuses(t *testing.T) {
	c := frameCodec{maxPayload: 8}
	frame := func(f *wire.Frame) []byte {
		b, _ := proto.Marshal(&transportpb.Frame{Data: wire.AppendFrame(nil, f)})
		return b
	}
	badVersion := frame(&wire.Frame{Type: wire.TypeMessage})
	badVersion[2+4] = 9
	for name, tc := range map[string]struct {
		msg  []byte
		want any
	}{
		"too large":   {frame(&wire.Frame{Type: wire.TypeMessage, Payload: make([]byte, 9)}), new(*wire.FrameTooLargeError)},
		"bad version": {badVersion, new(*wire.VersionError)},
		"not a Frame": {[]byte{0x12, 0x01, 0x00}, nil},
		"cut short":   {frame(&wire.Frame{Type: wire.TypeMessage, Payload: []byte("abc")})[:10], nil},
	} {
		var r received
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(tc.msg)}, &r); err != nil {
			t.Fatalf("%s: Unmarshal failed: %v", name, err)
		}
		if !errors.Is(r.err, spear.ErrInvalidMessage) {
			t.Errorf("%s: %v, want an error matching ErrInvalidMessage", name, r.err)
		}
		if tc.want != nil && !errors.As(r.err, tc.want) {
			t.Errorf("%s: %v is not a %T", name, r.err, tc.want)
		}
	}
}
