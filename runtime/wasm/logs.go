package wasm

import (
	"sync"

	"github.com/spear-go/spear/runtime"
)

// guestLog is a guest's stderr, split into lines of the instance's
// runtime.Output, which logs them (structured lines as records of their
// own), keeps the latest for Logs and hands them to followers. Unlike a
// runtime.LineWriter it is safe for concurrent use: a reset's new
// incarnation may write while the old one is flushed.
type guestLog struct {
	out *runtime.Output

	mu sync.Mutex // guards w
	w  *runtime.LineWriter
}

func newGuestLog(out *runtime.Output) *guestLog {
	return &guestLog{out: out, w: out.Writer("stderr")}
}

// Write implements io.Writer.
func (l *guestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// flush emits an unfinished last line.
func (l *guestLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Flush()
}
