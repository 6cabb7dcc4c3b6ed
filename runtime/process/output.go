package process

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"sync"
)

// maxLineBytes bounds one captured output line; the rest of a longer line
// is dropped and the line marked with truncatedMark.
const maxLineBytes = 8 << 10

// truncatedMark ends a line cut at maxLineBytes.
const truncatedMark = " [truncated]"

// ring keeps the last lines of an instance's output. It is safe for
// concurrent use.
type ring struct {
	mu    sync.Mutex // guards the fields below
	lines []string   // len == capacity once full
	next  int        // where the next line goes once full
	limit int
}

func newRing(limit int) *ring { return &ring{limit: limit} }

func (r *ring) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) < r.limit {
		r.lines = append(r.lines, line)
		return
	}
	r.lines[r.next] = line
	r.next = (r.next + 1) % r.limit
}

// last returns up to n of the newest lines, oldest first.
func (r *ring) last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n = min(n, len(r.lines))
	if n <= 0 {
		return nil
	}
	out := make([]string, 0, n)
	// In age order the lines are lines[next:] then lines[:next].
	for k := len(r.lines) - n; k < len(r.lines); k++ {
		out = append(out, r.lines[(r.next+k)%len(r.lines)])
	}
	return out
}

// capture reads r line by line until EOF or a read error, keeping each
// line in out and logging it at Info with the stream's name; it closes
// done when it returns. Lines longer than maxLineBytes are truncated.
func capture(r io.Reader, stream string, out *ring, log *slog.Logger, done chan<- struct{}) {
	defer close(done)
	log = log.With("stream", stream)
	br := bufio.NewReaderSize(r, maxLineBytes)
	for {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			emit(string(b)+truncatedMark, out, log)
			err = skipLine(br)
			if err != nil {
				return
			}
			continue
		}
		if len(b) > 0 {
			emit(string(bytes.TrimRight(b, "\r\n")), out, log)
		}
		if err != nil {
			return
		}
	}
}

// skipLine discards the rest of the current line.
func skipLine(br *bufio.Reader) error {
	for {
		_, err := br.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}

// emit records one output line. The line is the log message itself, as an
// operator reading the agent's log expects to see the instance's output.
func emit(line string, out *ring, log *slog.Logger) {
	out.add(line)
	log.Info(line)
}
