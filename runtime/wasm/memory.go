package wasm

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// pageSize is the size of a wasm memory page.
const pageSize = 64 << 10

// memoryLimit caps the linear memory of one module instance. wazero's own
// limit (RuntimeConfig.WithMemoryLimitPages) is per engine, so per-instance
// limits would need an engine, and a compilation, per limit; an allocator
// is per instantiation and, better, learns when the guest hit the limit:
// it refuses the growth, memory.grow returns -1 to the guest, and
// exhausted tells the supervisor why the guest died next.
type memoryLimit struct {
	limit     uint64
	exhausted atomic.Bool
}

var _ experimental.MemoryAllocator = (*memoryLimit)(nil)

// Allocate implements experimental.MemoryAllocator.
func (m *memoryLimit) Allocate(capacity, _ uint64) experimental.LinearMemory {
	return &linearMemory{m: m, buf: make([]byte, 0, min(capacity, m.limit))}
}

// linearMemory is one growable memory. wazero calls it from the module's
// goroutine only.
type linearMemory struct {
	m       *memoryLimit
	buf     []byte
	started bool // the initial allocation, which cannot fail, is done
}

// Reallocate implements experimental.LinearMemory. A wasm memory never
// shrinks, and bytes past len(buf) were never handed out, so they are
// still zero when the memory grows into them.
func (l *linearMemory) Reallocate(size uint64) []byte {
	// Start checks the module's initial memory against the limit; here
	// a failure would make wazero panic.
	if size > l.m.limit && l.started {
		l.m.exhausted.Store(true)
		return nil
	}
	l.started = true
	if size > uint64(cap(l.buf)) {
		// Grow geometrically, as append would, but not past the limit.
		c := max(size, min(2*uint64(cap(l.buf)), l.m.limit))
		nb := make([]byte, size, c)
		copy(nb, l.buf)
		l.buf = nb
	}
	l.buf = l.buf[:size]
	return l.buf
}

// Free implements experimental.LinearMemory.
func (l *linearMemory) Free() { l.buf = nil }
