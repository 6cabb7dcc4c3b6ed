package grpc

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/wire"
)

// frameCodec encodes the FrameTransport service's messages, Frame{bytes
// data = 1}, straight from and into wire frames, in exactly the bytes the
// protobuf codec would write: the tag, the length, then the frame. Sending
// copies a frame once, into a buffer of grpc's pool that grpc then owns;
// receiving copies the payload once, from grpc's buffers into one of the
// receive pool, where the protobuf codec would make a message and copy
// twice. It is only ever forced on the transport's own streams, so it
// changes nothing for other grpc services in the process.
type frameCodec struct {
	maxPayload uint32
}

// Name is the content-subtype: the messages are protobuf.
func (frameCodec) Name() string { return "proto" }

// frameField is the tag of Frame.data: field 1, length-delimited.
var frameField = protowire.AppendTag(nil, 1, protowire.BytesType)[0]

// Marshal implements encoding.CodecV2 for a *wire.Frame.
func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*wire.Frame)
	if !ok {
		return nil, fmt.Errorf("grpc transport: cannot marshal %T", v)
	}
	n := f.Size()
	size := 1 + protowire.SizeVarint(uint64(n)) + n
	var b *[]byte
	var pool mem.BufferPool
	if mem.IsBelowBufferPoolingThreshold(size) {
		s := make([]byte, 0, size)
		b = &s
	} else {
		pool = mem.DefaultBufferPool()
		b = pool.Get(size)
	}
	out := append((*b)[:0], frameField)
	out = protowire.AppendVarint(out, uint64(n))
	out = wire.AppendFrame(out, f)
	*b = out
	return mem.BufferSlice{mem.NewBuffer(b, pool)}, nil
}

// received is what Unmarshal fills: a frame, or why the message is not
// one. A frame-level problem is not an unmarshalling error, which grpc
// would turn into the end of the stream: it goes to the session, which
// tells the peer, as on every other transport.
type received struct {
	f   wire.Frame
	err error
}

// Unmarshal implements encoding.CodecV2 for a *received.
func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*received)
	if !ok {
		return fmt.Errorf("grpc transport: cannot unmarshal into %T", v)
	}
	r.f, r.err = c.decode(data)
	return nil
}

// decode reads one frame from a Frame message's bytes.
func (c frameCodec) decode(data mem.BufferSlice) (wire.Frame, error) {
	// The tag, the length and the frame header fit in the first 32 bytes.
	var head [32]byte
	got := data.CopyTo(head[:])
	num, typ, k := protowire.ConsumeTag(head[:got])
	if k < 0 || num != 1 || typ != protowire.BytesType {
		return wire.Frame{}, fmt.Errorf("%w: grpc message is not a Frame", spear.ErrInvalidMessage)
	}
	n, m := protowire.ConsumeVarint(head[k:got])
	if m < 0 || uint64(data.Len()-k-m) != n {
		return wire.Frame{}, fmt.Errorf("%w: grpc message is not exactly one Frame", spear.ErrInvalidMessage)
	}
	start := k + m
	hd, err := wire.ParseHeader(head[start:got], c.maxPayload)
	if err != nil {
		return wire.Frame{}, err
	}
	if int(n)-wire.HeaderSize != int(hd.Length) {
		return wire.Frame{}, fmt.Errorf("%w: header says %d payload bytes, %d present", spear.ErrInvalidMessage, hd.Length, int(n)-wire.HeaderSize)
	}
	f := wire.Frame{Type: hd.Type, Flags: hd.Flags, ID: hd.ID}
	if hd.Length > 0 {
		copyFrom(f.NewPayload(int(hd.Length)), data, start+wire.HeaderSize)
	}
	return f, nil
}

// copyFrom copies data's bytes from offset off on into dst.
func copyFrom(dst []byte, data mem.BufferSlice, off int) {
	for _, b := range data {
		p := b.ReadOnlyData()
		if off >= len(p) {
			off -= len(p)
			continue
		}
		dst = dst[copy(dst, p[off:]):]
		off = 0
		if len(dst) == 0 {
			return
		}
	}
}
