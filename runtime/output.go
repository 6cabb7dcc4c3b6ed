package runtime

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// MaxLineBytes bounds one output line; the rest of a longer line is
// dropped and the line ends with TruncatedMark.
const MaxLineBytes = 8 << 10

// TruncatedMark ends a line cut at MaxLineBytes.
const TruncatedMark = " [truncated]"

// Output is an instance's output, line by line. Each line is logged under
// the instance's logger — a structured line (a JSON object or logfmt, as
// log/slog and most loggers write) as a record of its own with the
// line's level, message and attributes, any other line as it is — kept
// in a ring of the latest lines for Instance.Logs, and handed to
// followers. Runtimes feed it through Writer or Line and Close it when
// the instance's output has ended. It is safe for concurrent use.
type Output struct {
	limit int

	mu      sync.Mutex // guards the fields below
	log     *slog.Logger
	lines   []string // line k (counting from 0) is at lines[k%limit]
	total   uint64   // lines added so far
	changed chan struct{}
	closed  bool
}

// NewOutput returns an Output that keeps limit lines (at least 1) and logs
// each line to log (nil: not logged).
func NewOutput(log *slog.Logger, limit int) *Output {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Output{log: log, limit: max(limit, 1), changed: make(chan struct{})}
}

// Line adds one line that the instance wrote on stream ("stdout",
// "stderr"). Lines after Close are logged but not kept.
func (o *Output) Line(stream, line string) {
	o.mu.Lock()
	log := o.log
	o.mu.Unlock()
	logLine(log, stream, line)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	if len(o.lines) < o.limit {
		o.lines = append(o.lines, line)
	} else {
		o.lines[o.total%uint64(o.limit)] = line
	}
	o.total++
	close(o.changed)
	o.changed = make(chan struct{})
}

// SetLogger replaces the logger of the lines to come, for attributes
// learned after the Output was made (a process's pid).
func (o *Output) SetLogger(log *slog.Logger) {
	o.mu.Lock()
	o.log = log
	o.mu.Unlock()
}

// Close marks the output ended: followers return once they have had every
// line. It is idempotent.
func (o *Output) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.closed = true
		close(o.changed)
	}
}

// Last returns up to n of the newest lines, oldest first.
func (o *Output) Last(n int) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	lines, _ := o.sinceLocked(o.total - min(uint64(max(n, 0)), uint64(len(o.lines))))
	return lines
}

// sinceLocked returns the kept lines from the k-th on, and how many lines
// from k on are no longer kept. o.mu must be held.
func (o *Output) sinceLocked(k uint64) (lines []string, lost uint64) {
	oldest := o.total - uint64(len(o.lines))
	if k < oldest {
		lost, k = oldest-k, oldest
	}
	if k >= o.total {
		return nil, lost
	}
	lines = make([]string, 0, o.total-k)
	for ; k < o.total; k++ {
		lines = append(lines, o.lines[k%uint64(o.limit)])
	}
	return lines, lost
}

// Follow calls fn with up to tail of the newest lines, then with every
// line added after them, as they come. It returns nil once the output is
// closed and fn has had every line, ctx's error when ctx ends first, or
// fn's error. A follower slower than the ring is long gets a line saying
// how many lines it missed instead of them. fn runs on the caller's
// goroutine, never under the Output's lock.
func (o *Output) Follow(ctx context.Context, tail int, fn func(line string) error) error {
	o.mu.Lock()
	next := o.total - min(uint64(max(tail, 0)), uint64(len(o.lines)))
	o.mu.Unlock()
	for {
		o.mu.Lock()
		lines, lost := o.sinceLocked(next)
		next = o.total
		changed, closed := o.changed, o.closed
		o.mu.Unlock()
		if lost > 0 {
			if err := fn(fmt.Sprintf("[%d lines skipped: the follower fell behind]", lost)); err != nil {
				return err
			}
		}
		for _, l := range lines {
			if err := fn(l); err != nil {
				return err
			}
		}
		if closed && len(lines) == 0 && lost == 0 {
			return nil
		}
		if closed {
			continue // drain what came in while fn ran, then end
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Writer returns an io.Writer that splits what is written into lines for
// stream. Lines longer than MaxLineBytes are cut with TruncatedMark; a
// trailing "\r" is dropped. Flush the writer to emit an unfinished last
// line. It is for one writer at a time.
func (o *Output) Writer(stream string) *LineWriter {
	return &LineWriter{out: o, stream: stream}
}

// LineWriter splits bytes into an Output's lines; Output.Writer makes it.
type LineWriter struct {
	out     *Output
	stream  string
	partial []byte
	skip    bool // dropping the rest of a truncated line
}

// Write implements io.Writer; it never fails.
func (w *LineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !w.skip {
			room := MaxLineBytes - len(w.partial)
			if len(chunk) > room {
				w.partial = append(w.partial, chunk[:room]...)
				w.emit(TruncatedMark)
				w.skip = true
			} else {
				w.partial = append(w.partial, chunk...)
			}
		}
		if i < 0 {
			break
		}
		if !w.skip {
			w.emit("")
		}
		w.skip = false
		p = p[i+1:]
	}
	return n, nil
}

// Flush emits an unfinished last line.
func (w *LineWriter) Flush() {
	if len(w.partial) > 0 && !w.skip {
		w.emit("")
	}
	w.partial, w.skip = w.partial[:0], false
}

func (w *LineWriter) emit(suffix string) {
	line := w.partial
	if n := len(line); suffix == "" && n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	w.out.Line(w.stream, string(line)+suffix)
	w.partial = w.partial[:0]
}
