package wire

import (
	"math/bits"
	"sync"
)

// The receive pool holds payload buffers in power-of-two size classes,
// from 64 B to DefaultMaxPayload. A payload read into a pooled buffer and
// released after use costs no allocation and, for large payloads, none of
// the page faults a fresh allocation takes while the kernel copies into
// it. Larger payloads (a limit raised over the default) are allocated
// outright.
const (
	minClassShift = 6
	maxClassShift = 24
)

var pools [maxClassShift - minClassShift + 1]sync.Pool

// buffer is one pooled payload buffer.
type buffer struct {
	b     []byte
	class uint8
}

func (b *buffer) put() {
	poisonBuffer(b.b)
	pools[b.class].Put(b)
}

// NewPayload gives f a payload of n bytes from the receive pool, for a
// transport to fill with a frame it receives, and returns it. f.Release
// gives it back. The bytes are not zeroed.
func (f *Frame) NewPayload(n int) []byte {
	f.Release()
	if n == 0 {
		return nil
	}
	if n > 1<<maxClassShift {
		f.Payload = make([]byte, n)
		return f.Payload
	}
	class := 0
	if n > 1<<minClassShift {
		class = bits.Len(uint(n-1)) - minClassShift
	}
	b, _ := pools[class].Get().(*buffer)
	if b == nil {
		b = &buffer{b: make([]byte, 1<<(class+minClassShift)), class: uint8(class)}
	}
	f.buf = b
	f.Payload = b.b[:n]
	return f.Payload
}
