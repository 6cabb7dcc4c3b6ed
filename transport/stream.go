package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/wire"
)

// DefaultWriteTimeout bounds how long a write may wait for a peer that has
// stopped reading.
const DefaultWriteTimeout = 10 * time.Second

// inlinePayload is the largest payload copied into the batch buffer; larger
// payloads are written from the caller's slice with writev.
const inlinePayload = 4096

// StreamConn frames a byte stream (a unix or tcp socket) as a [Conn].
//
// Writes use group commit: the first writer to arrive writes, and frames
// that other goroutines queue meanwhile go out together in its next writev,
// so many concurrent callers share system calls instead of queueing on a
// lock. Every WriteFrame returns only after its own frame was written.
type StreamConn struct {
	c            net.Conn
	r            *wire.Reader
	info         Info
	writeTimeout time.Duration
	closeOnce    sync.Once

	mu       sync.Mutex // guards the fields below
	cond     sync.Cond  // signalled when flushed advances or werr is set
	queue    []*wire.Frame
	queued   uint64 // frames ever queued
	flushed  uint64 // frames ever written
	flushing bool   // a writer is in the write loop
	werr     error  // first write error; the connection is dead after it

	// Owned by the goroutine that has flushing set.
	spare    []*wire.Frame // the queue not in use
	batch    net.Buffers
	wv       net.Buffers // what WriteTo consumes
	deadline time.Time   // the write deadline in force
	buf      []byte
}

var _ Conn = (*StreamConn)(nil)

// NewStreamConn wraps c. maxPayload bounds incoming payloads (0 means
// wire.DefaultMaxPayload) and writeTimeout bounds each write (0 means
// DefaultWriteTimeout). info.Transport names the transport.
func NewStreamConn(c net.Conn, info Info, maxPayload uint32, writeTimeout time.Duration) *StreamConn {
	if writeTimeout <= 0 {
		writeTimeout = DefaultWriteTimeout
	}
	if info.Remote == "" && c.RemoteAddr() != nil {
		info.Remote = c.RemoteAddr().String()
	}
	s := &StreamConn{c: c, r: wire.NewReader(c, maxPayload), info: info, writeTimeout: writeTimeout}
	s.cond.L = &s.mu
	return s
}

// ReadFrame implements [Conn].
func (s *StreamConn) ReadFrame() (wire.Frame, error) {
	f, err := s.r.ReadFrame()
	return f, FilterCloseErr(err)
}

// WriteFrame implements [Conn].
func (s *StreamConn) WriteFrame(f *wire.Frame) error {
	s.mu.Lock()
	if s.werr != nil {
		err := s.werr
		s.mu.Unlock()
		return err
	}
	s.queue = append(s.queue, f)
	s.queued++
	mine := s.queued
	if s.flushing {
		for s.flushed < mine && s.werr == nil {
			s.cond.Wait()
		}
		var err error
		if s.flushed < mine {
			err = s.werr
		}
		s.mu.Unlock()
		return err
	}
	s.flushing = true
	for len(s.queue) > 0 && s.werr == nil {
		frames, upto := s.queue, s.queued
		s.queue = s.spare[:0]
		s.mu.Unlock()
		n, err := s.writeBatch(frames)
		whole := wholeFrames(frames, n)
		clear(frames)
		s.mu.Lock()
		s.spare = frames[:0] // the two queues take turns, so neither is reallocated
		if err != nil {
			// Frames the failed write did not take whole get werr;
			// those it took whole before failing were written, and
			// their writers get nil: an error always means the peer
			// cannot have read the frame (spear.ErrNotSent above).
			s.werr = writeErr(err)
			s.flushed = upto - uint64(len(frames)-whole)
		} else {
			s.flushed = upto
		}
		s.cond.Broadcast()
	}
	s.flushing = false
	err := s.werr
	if s.flushed >= mine {
		err = nil
	}
	s.mu.Unlock()
	return err
}

// wholeFrames counts the frames at the start of a batch that fit whole in
// its first n bytes.
func wholeFrames(frames []*wire.Frame, n int64) int {
	for i, f := range frames {
		if n -= int64(wire.HeaderSize + len(f.Payload)); n < 0 {
			return i
		}
	}
	return len(frames)
}

// writeBatch writes frames with one writev, copying small payloads next to
// their headers so that a batch of small frames is one buffer. It returns
// how many bytes were written.
func (s *StreamConn) writeBatch(frames []*wire.Frame) (int64, error) {
	buf := s.buf[:0]
	bufs := s.batch[:0]
	mark := 0 // start of the part of buf not yet in bufs
	for _, f := range frames {
		var h [wire.HeaderSize]byte
		wire.PutHeader(h[:], f)
		buf = append(buf, h[:]...)
		if len(f.Payload) <= inlinePayload {
			buf = append(buf, f.Payload...)
			continue
		}
		bufs = append(bufs, buf[mark:], f.Payload)
		mark = len(buf)
	}
	if mark < len(buf) {
		bufs = append(bufs, buf[mark:])
	}
	// buf may have moved while growing; slices taken before that still
	// point at the old array, whose bytes were final when taken.
	// Moving the deadline costs a timer update; do it only when the one in
	// force has less than half the timeout left, so a write may be allowed
	// between half and all of writeTimeout.
	if now := time.Now(); now.After(s.deadline.Add(-s.writeTimeout / 2)) {
		s.deadline = now.Add(s.writeTimeout)
		_ = s.c.SetWriteDeadline(s.deadline)
	}
	s.wv = bufs // a field, not a local, so WriteTo's receiver does not escape per call
	n, err := s.wv.WriteTo(s.c)
	// Keep the buffers for the next batch unless a burst made them large.
	if cap(buf) <= 64<<10 {
		s.buf = buf[:0]
	} else {
		s.buf = nil
	}
	clear(bufs)
	s.batch = bufs[:0]
	return n, err
}

// writeErr classifies a failed write: a passed write deadline means the
// peer stopped reading (spear.ErrTimeout); the rest go through
// FilterCloseErr.
func writeErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: write: peer not reading: %w", spear.ErrTimeout, err)
	}
	return FilterCloseErr(err)
}

// Close implements [Conn].
func (s *StreamConn) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.c.Close() })
	return err
}

// Info implements [Conn]. Over TLS, Info.TLS is set once the handshake is
// done.
func (s *StreamConn) Info() Info {
	info := s.info
	if tc, ok := s.c.(*tls.Conn); ok {
		if st := tc.ConnectionState(); st.HandshakeComplete {
			info.TLS = &st
		}
	}
	return info
}

// NetConn returns the underlying connection.
func (s *StreamConn) NetConn() net.Conn { return s.c }
