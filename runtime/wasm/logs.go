package wasm

import (
	"bytes"
	"log/slog"
	"sync"
)

// maxLineLen bounds a line of guest output; longer lines are split.
const maxLineLen = 8 << 10

// lineLog is a guest's stderr: complete lines are logged under the
// instance's logger and kept in a ring for Instance.Logs. It is safe for
// concurrent use.
type lineLog struct {
	log *slog.Logger

	mu      sync.Mutex // guards the fields below
	partial []byte     // an unfinished line
	ring    []string
	next    int // where the next line goes in ring
	full    bool
}

func newLineLog(log *slog.Logger, lines int) *lineLog {
	return &lineLog{log: log, ring: make([]string, lines)}
}

// Write implements io.Writer.
func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial, p...)
			for len(l.partial) >= maxLineLen {
				l.emitLocked(l.partial[:maxLineLen])
				l.partial = append(l.partial[:0], l.partial[maxLineLen:]...)
			}
			break
		}
		if len(l.partial) > 0 {
			l.partial = append(l.partial, p[:i]...)
			l.emitLocked(l.partial)
			l.partial = l.partial[:0]
		} else {
			l.emitLocked(p[:i])
		}
		p = p[i+1:]
	}
	return n, nil
}

// flush emits an unfinished last line.
func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.emitLocked(l.partial)
		l.partial = nil
	}
}

// emitLocked logs and keeps one line; l.mu must be held.
func (l *lineLog) emitLocked(line []byte) {
	s := string(bytes.TrimRight(line, "\r"))
	l.log.Info("wasm guest stderr", "line", s)
	l.ring[l.next] = s
	l.next = (l.next + 1) % len(l.ring)
	if l.next == 0 {
		l.full = true
	}
}

// last returns up to n of the most recent lines, oldest first.
func (l *lineLog) last(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	size := l.next
	if l.full {
		size = len(l.ring)
	}
	n = min(max(n, 0), size)
	out := make([]string, 0, n)
	for i := l.next - n; i < l.next; i++ {
		out = append(out, l.ring[(i+len(l.ring))%len(l.ring)])
	}
	return out
}
