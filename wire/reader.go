package wire

import (
	"errors"
	"fmt"
	"io"

	"github.com/spear-go/spear"
)

// readBufferSize is the Reader's buffer. Small frames, and runs of them,
// arrive in one read; larger payloads are read straight into their own
// allocation. It is kept small because every idle connection holds one.
const readBufferSize = 1024

// maxReadBuffer bounds how far a busy connection's buffer grows.
const maxReadBuffer = 32 << 10

// Reader reads frames from a byte stream. It is not safe for concurrent use.
type Reader struct {
	r          io.Reader
	maxPayload uint32
	buf        []byte
	start, end int // buf[start:end] holds bytes read but not yet consumed
}

// NewReader returns a Reader that rejects payloads over maxPayload bytes
// (0 means [DefaultMaxPayload]).
func NewReader(r io.Reader, maxPayload uint32) *Reader {
	if maxPayload == 0 {
		maxPayload = DefaultMaxPayload
	}
	return &Reader{r: r, maxPayload: maxPayload}
}

// ReadFrame reads the next frame. The returned payload is owned by the
// caller. It returns [io.EOF] when the stream ends cleanly between frames,
// an error wrapping [spear.ErrInvalidMessage] (and [io.ErrUnexpectedEOF])
// when it ends inside one, and the errors of [ParseHeader] for a bad header.
// After an error the stream is out of step and must be closed.
func (r *Reader) ReadFrame() (Frame, error) {
	if r.buf == nil {
		r.buf = make([]byte, readBufferSize)
	}
	if err := r.fill(HeaderSize); err != nil {
		return Frame{}, err
	}
	hd, err := ParseHeader(r.buf[r.start:r.end], r.maxPayload)
	if err != nil {
		return Frame{}, err
	}
	r.start += HeaderSize
	f := Frame{Type: hd.Type, Flags: hd.Flags, ID: hd.ID}
	n := int(hd.Length)
	if n == 0 {
		return f, nil
	}
	f.Payload = make([]byte, n)
	copied := copy(f.Payload, r.buf[r.start:r.end])
	r.start += copied
	if copied < n {
		if _, err := io.ReadFull(r.r, f.Payload[copied:]); err != nil {
			return Frame{}, truncated(err)
		}
	}
	return f, nil
}

// fill makes at least n bytes available in buf[start:end].
func (r *Reader) fill(n int) error {
	if r.end-r.start >= n {
		return nil
	}
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	for r.end < n {
		m, err := r.r.Read(r.buf[r.end:])
		r.end += m
		if r.end == len(r.buf) && len(r.buf) < maxReadBuffer {
			// A read that fills the buffer means frames are arriving
			// faster than one buffer a read: a busy connection gets a
			// bigger one, so it needs fewer system calls. Idle ones keep
			// the small one.
			r.buf = append(r.buf, make([]byte, len(r.buf))...)
		}
		if err != nil {
			if r.end >= n {
				return nil
			}
			if errors.Is(err, io.EOF) && r.end == 0 {
				return io.EOF
			}
			return truncated(err)
		}
	}
	return nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated frame: %w", spear.ErrInvalidMessage, err)
	}
	return err
}
