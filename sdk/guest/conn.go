package guest

import (
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/wire"
)

// conn carries frames over a pair of byte streams: in from the agent
// (stdin) and out to the agent (stdout). It has the methods the handshake
// of internal/auth needs.
type conn struct {
	r *wire.Reader // only the serving loop reads

	mu  sync.Mutex // guards the fields below, so handler goroutines may write
	w   io.Writer
	buf []byte

	peerMax uint32 // the agent's payload limit, once the handshake told it
}

func newConn(in io.Reader, out io.Writer) *conn {
	return &conn{r: wire.NewReader(in, 0), w: out}
}

// ReadFrame returns the next frame from the agent.
func (c *conn) ReadFrame() (wire.Frame, error) { return c.r.ReadFrame() }

// WriteFrame encodes f and writes it with one Write, so frames never
// interleave. A payload over the agent's limit is not sent: the error is
// a *wire.FrameTooLargeError, and the connection goes on.
func (c *conn) WriteFrame(f *wire.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peerMax > 0 && uint64(f.Len()) > uint64(c.peerMax) {
		return &wire.FrameTooLargeError{Length: uint32(min(f.Len(), math.MaxUint32)), Max: c.peerMax}
	}
	c.buf = wire.AppendFrame(c.buf[:0], f)
	if _, err := c.w.Write(c.buf); err != nil {
		return fmt.Errorf("%w: %s: %w", spear.ErrSendFailed, f.Type, err)
	}
	if cap(c.buf) > 64<<10 {
		c.buf = nil // do not pin one large payload's buffer for ever
	}
	return nil
}

// Close does nothing: the streams are the process's own, and a guest's
// handshake is not bounded by a context that would need to cut it short.
func (c *conn) Close() error { return nil }
