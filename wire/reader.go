package wire

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spear-go/spear"
)

// readBufferSize is the Reader's buffer. Small frames, and runs of them,
// arrive in one read; larger payloads are read straight into their own
// buffer. It is kept small because every idle connection holds one.
const readBufferSize = 1024

// maxReadBuffer bounds how far a busy connection's buffer grows. It is a
// balance: a bigger buffer takes more small frames per system call, but
// the part of a large payload that lands in it is copied once more.
const maxReadBuffer = 16 << 10

// Reader reads frames from a byte stream. It is not safe for concurrent use.
type Reader struct {
	r          io.Reader
	maxPayload uint32
	buf        []byte
	start, end int // buf[start:end] holds bytes read but not yet consumed

	// A frame whose payload is being read straight from r: a read that
	// ends with a deadline error leaves it here, and the next ReadFrame
	// goes on with it.
	partial Frame
	got     int // bytes of partial.Payload read so far
	reading bool
}

// NewReader returns a Reader that rejects payloads over maxPayload bytes
// (0 means [DefaultMaxPayload]).
func NewReader(r io.Reader, maxPayload uint32) *Reader {
	if maxPayload == 0 {
		maxPayload = DefaultMaxPayload
	}
	return &Reader{r: r, maxPayload: maxPayload}
}

// ReadFrame reads the next frame. The returned frame is owned by the
// caller, its payload from the receive pool (see [Frame.Release]). It
// returns [io.EOF] when the stream ends cleanly between frames, an error
// wrapping [spear.ErrInvalidMessage] (and [io.ErrUnexpectedEOF]) when it
// ends inside one, and the errors of [ParseHeader] for a bad header. After
// such an error the stream is out of step and must be closed.
//
// A read that fails with an error matching [os.ErrDeadlineExceeded] (a
// read deadline on the connection) loses nothing: the next ReadFrame
// resumes the frame it was in.
func (r *Reader) ReadFrame() (Frame, error) {
	if r.reading {
		return r.finish()
	}
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
	p := f.NewPayload(n)
	copied := copy(p, r.buf[r.start:r.end])
	r.start += copied
	if copied == n {
		return f, nil
	}
	r.partial, r.got, r.reading = f, copied, true
	return r.finish()
}

// finish reads the rest of the partial frame's payload from r, straight
// into it.
func (r *Reader) finish() (Frame, error) {
	p := r.partial.Payload
	for r.got < len(p) {
		m, err := r.r.Read(p[r.got:])
		r.got += m
		if err != nil && r.got < len(p) {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return Frame{}, err
			}
			r.partial.Release()
			r.partial, r.reading = Frame{}, false
			return Frame{}, truncated(err)
		}
	}
	f := r.partial
	r.partial, r.reading = Frame{}, false
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
			switch {
			case r.end >= n:
				return nil
			case errors.Is(err, os.ErrDeadlineExceeded):
				return err
			case errors.Is(err, io.EOF) && r.end == 0:
				return io.EOF
			}
			return truncated(err)
		}
	}
	return nil
}

// Buffered reports whether bytes of a next frame have been read already:
// a ReadFrame now may not need a system call.
func (r *Reader) Buffered() bool { return r.end > r.start }

func truncated(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated frame: %w", spear.ErrInvalidMessage, err)
	}
	return err
}
