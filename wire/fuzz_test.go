package wire_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/wire"
)

// fuzzLimit is the payload limit the fuzzers use: small, so that the
// fuzzer reaches both sides of it.
const fuzzLimit = 64

// chunkReader returns at most n bytes per Read, to exercise refills.
type chunkReader struct {
	r io.Reader
	n int
}

func (c chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// FuzzReader feeds arbitrary bytes to a Reader, delivered in chunks of a
// fuzzed size. It must never panic, never return a payload over the limit,
// fail only with io.EOF (exactly at a frame boundary) or a protocol error,
// and the frames it returns must re-encode to exactly the bytes consumed.
func FuzzReader(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	f.Add(wire.AppendFrame(nil, &wire.Frame{Type: wire.TypeHeartbeat, ID: 1}), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		r := wire.NewReader(chunkReader{bytes.NewReader(data), int(chunk)%32 + 1}, fuzzLimit)
		var again []byte
		for {
			fr, err := r.ReadFrame()
			if err != nil {
				if err == io.EOF {
					if !bytes.Equal(again, data) {
						t.Fatalf("io.EOF after %d of %d bytes", len(again), len(data))
					}
				} else if !errors.Is(err, spear.ErrInvalidMessage) {
					t.Fatalf("error %v is neither io.EOF nor ErrInvalidMessage", err)
				}
				break
			}
			if len(fr.Payload) > fuzzLimit {
				t.Fatalf("payload of %d bytes over the limit %d", len(fr.Payload), fuzzLimit)
			}
			if !fr.Type.Valid() {
				t.Fatalf("returned a frame of unknown type %d", fr.Type)
			}
			again = wire.AppendFrame(again, &fr)
			if !bytes.HasPrefix(data, again) {
				t.Fatalf("frames re-encode to %x, not a prefix of the input %x", again, data)
			}
		}
	})
}

// FuzzDecode checks Decode both ways: arbitrary bytes that decode must
// re-encode to themselves and read the same through a Reader; and any
// frame built from fuzzed fields must survive encode and decode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{}, uint8(1), uint16(0), uint64(0))
	f.Add(wire.AppendFrame(nil, &wire.Frame{Type: wire.TypeMessage, Payload: []byte("x")}), uint8(12), uint16(5), uint64(2))
	f.Fuzz(func(t *testing.T, data []byte, typ uint8, flags uint16, id uint64) {
		// Arbitrary bytes.
		fr, err := wire.Decode(data, fuzzLimit)
		r := wire.NewReader(bytes.NewReader(data), fuzzLimit)
		rf, rerr := r.ReadFrame()
		if err == nil {
			if again := wire.AppendFrame(nil, &fr); !bytes.Equal(again, data) {
				t.Fatalf("decoded %x, re-encoded %x", data, again)
			}
			if rerr != nil || rf.Type != fr.Type || rf.Flags != fr.Flags || rf.ID != fr.ID || !bytes.Equal(rf.Payload, fr.Payload) {
				t.Fatalf("Decode gave %v, the Reader %v %v", fr, rf, rerr)
			}
			if _, err := r.ReadFrame(); err != io.EOF {
				t.Fatalf("Reader after the only frame: %v", err)
			}
		} else if !errors.Is(err, spear.ErrInvalidMessage) {
			t.Fatalf("Decode error %v does not match ErrInvalidMessage", err)
		}

		// A frame built from fields.
		in := wire.Frame{Type: wire.Type(typ), Flags: wire.Flags(flags), ID: id, Payload: data}
		out, err := wire.Decode(wire.AppendFrame(nil, &in), fuzzLimit)
		wantOK := in.Type.Valid() && len(data) <= fuzzLimit
		if (err == nil) != wantOK {
			t.Fatalf("Decode of %v (%d payload bytes): %v", in.Type, len(data), err)
		}
		if err == nil && (out.Type != in.Type || out.Flags != in.Flags || out.ID != in.ID || !bytes.Equal(out.Payload, in.Payload)) {
			t.Fatalf("round trip changed %v into %v", in, out)
		}
	})
}
