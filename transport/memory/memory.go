// Package memory is the in-process transport, used by the wasm runtime and
// by tests. Addresses live in a process-wide table, as ports do for tcp;
// frames move through Go channels without being encoded.
package memory

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// Name is the transport's name.
const Name = "memory"

// queueLen is how many frames a direction buffers before a writer waits.
const queueLen = 64

var (
	mu        sync.Mutex
	listeners = map[string]*Listener{}
	nextAddr  atomic.Uint64
)

// Listener accepts in-process connections at one address.
type Listener struct {
	addr         string
	writeTimeout time.Duration // of the connections made to it
	conns        chan *Conn
	closed       chan struct{}
	once         sync.Once
}

var _ transport.Listener = (*Listener)(nil)

// Listen returns a listener at a fresh, unique address "memory:N". Its
// connections bound a write to a peer that stopped reading by
// transport.DefaultWriteTimeout.
func Listen() *Listener { return listen(0) }

func listen(writeTimeout time.Duration) *Listener {
	l := &Listener{
		addr:         fmt.Sprintf("memory:%d", nextAddr.Add(1)),
		writeTimeout: cmp.Or(writeTimeout, transport.DefaultWriteTimeout),
		conns:        make(chan *Conn),
		closed:       make(chan struct{}),
	}
	mu.Lock()
	listeners[l.addr] = l
	mu.Unlock()
	return l
}

// Accept implements transport.Listener.
func (l *Listener) Accept() (transport.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, fmt.Errorf("%w: memory listener %s", spear.ErrChannelClosed, l.addr)
	}
}

// Close implements transport.Listener and frees the address.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		mu.Lock()
		delete(listeners, l.addr)
		mu.Unlock()
	})
	return nil
}

// Addr implements transport.Listener.
func (l *Listener) Addr() string { return l.addr }

// Dial connects to the listener at addr, waiting until it accepts or ctx
// ends.
func Dial(ctx context.Context, addr string) (transport.Conn, error) {
	mu.Lock()
	l := listeners[addr]
	mu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("%w: no memory listener at %q", spear.ErrConnectionFailed, addr)
	}
	client, server := pipe(l.writeTimeout)
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, fmt.Errorf("%w: memory listener %s closed", spear.ErrConnectionFailed, addr)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: dial %s: %w", spear.ErrConnectionFailed, addr, ctx.Err())
	}
}

// Conn is one end of an in-process connection.
//
// A reader waits on its frame channel alone, a plain receive, which is
// cheaper than a select: what else could end the wait (either end
// closing, the read deadline passing) is a flag, and whoever sets one
// also puts a wake-up (a frame of type 0) on the channel if there is room,
// which there is whenever a reader waits on it. The reader looks at the
// flags before it waits and after each wake-up, so none is lost.
type Conn struct {
	in, out      chan wire.Frame
	peer         *Conn
	done         chan struct{} // closed when this end closes (for blocked writers)
	closed       atomic.Bool   // this end closed
	writeTimeout time.Duration
	once         sync.Once
	timedOut     atomic.Bool // a write waited writeTimeout, and closed the connection

	expired  atomic.Bool // the read deadline has passed
	dmu      sync.Mutex  // guards the fields below
	deadline time.Time   // the read deadline; zero for none
	dtimer   *time.Timer // sets expired at the deadline
}

var (
	_ transport.Conn          = (*Conn)(nil)
	_ transport.ReadDeadliner = (*Conn)(nil)
)

// errReadDeadline is what a read that outlived its deadline returns.
var errReadDeadline = fmt.Errorf("memory read: %w", os.ErrDeadlineExceeded)

// Pipe returns the two ends of a new in-process connection, which bound a
// write to a peer that stopped reading by transport.DefaultWriteTimeout.
func Pipe() (*Conn, *Conn) { return pipe(transport.DefaultWriteTimeout) }

func pipe(writeTimeout time.Duration) (*Conn, *Conn) {
	ab, ba := make(chan wire.Frame, queueLen), make(chan wire.Frame, queueLen)
	a := &Conn{in: ba, out: ab, done: make(chan struct{}), writeTimeout: writeTimeout}
	b := &Conn{in: ab, out: ba, done: make(chan struct{}), writeTimeout: writeTimeout}
	a.peer, b.peer = b, a
	return a, b
}

// ReadFrame implements transport.Conn. Frames the peer wrote before closing
// are still delivered. The payload is from the receive pool (see
// wire.Frame.Release).
func (c *Conn) ReadFrame() (wire.Frame, error) {
	for {
		select {
		case f := <-c.in:
			if f.Type == 0 {
				continue // a wake-up; the queue may hold more
			}
			return f, nil
		default:
		}
		switch {
		case c.closed.Load():
			return wire.Frame{}, fmt.Errorf("%w: memory connection closed", spear.ErrChannelClosed)
		case c.peer.closed.Load():
			for {
				select {
				case f := <-c.in:
					if f.Type != 0 {
						return f, nil
					}
					continue
				default:
				}
				return wire.Frame{}, fmt.Errorf("%w: memory peer closed", spear.ErrChannelClosed)
			}
		case c.expired.Load():
			return wire.Frame{}, errReadDeadline
		}
		if f := <-c.in; f.Type != 0 {
			return f, nil
		}
	}
}

// Buffered reports whether frames are waiting to be read.
func (c *Conn) Buffered() bool { return len(c.in) > 0 }

// wake makes a waiting ReadFrame look at the flags again.
func (c *Conn) wake() {
	select {
	case c.in <- wire.Frame{}:
	default: // full: the reader is not waiting
	}
}

// SetReadDeadline implements transport.ReadDeadliner.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.deadline = t
	if c.dtimer != nil {
		c.dtimer.Stop()
	}
	switch d := time.Until(t); {
	case t.IsZero():
		c.expired.Store(false)
	case d <= 0:
		c.expire(t)
	case c.dtimer == nil:
		c.expired.Store(false)
		c.dtimer = time.AfterFunc(d, func() { c.expire(time.Time{}) })
	default:
		c.expired.Store(false)
		c.dtimer.Reset(d)
	}
	return nil
}

// expire marks the deadline passed. From the timer (t zero) it checks the
// deadline is still the one that passed; SetReadDeadline may have moved it.
func (c *Conn) expire(t time.Time) {
	if t.IsZero() {
		c.dmu.Lock()
		passed := !c.deadline.IsZero() && !c.deadline.After(time.Now())
		c.dmu.Unlock()
		if !passed {
			return
		}
	}
	c.expired.Store(true)
	c.wake()
}

// WriteFrame implements transport.Conn. The payload (Payload and Body) is
// copied into a buffer of the receive pool, so the caller may reuse it. A
// write that waits the write timeout for a peer that stopped reading
// closes the connection and fails with an error matching spear.ErrTimeout.
func (c *Conn) WriteFrame(f *wire.Frame) error {
	if err := c.closedErr(); err != nil {
		return err
	}
	g := wire.Frame{Type: f.Type, Flags: f.Flags, ID: f.ID}
	if n := f.Len(); n > 0 {
		p := g.NewPayload(n)
		copy(p[copy(p, f.Payload):], f.Body)
	}
	select {
	case c.out <- g:
		return nil
	default: // the queue is full: wait, within the write timeout
	}
	t := time.NewTimer(c.writeTimeout)
	defer t.Stop()
	select {
	case c.out <- g:
		return nil
	case <-c.done:
	case <-c.peer.done:
	case <-t.C:
		c.timedOut.Store(true)
		c.Close()
		g.Release()
		return fmt.Errorf("%w: write: memory peer not reading for %s", spear.ErrTimeout, c.writeTimeout)
	}
	g.Release()
	return c.closedErr()
}

// closedErr returns the error for a closed connection, or nil while it is
// open.
func (c *Conn) closedErr() error {
	switch {
	case c.closed.Load():
		if c.timedOut.Load() {
			return fmt.Errorf("%w: memory connection closed after a write timed out", spear.ErrChannelClosed)
		}
		return fmt.Errorf("%w: memory connection closed", spear.ErrChannelClosed)
	case c.peer.closed.Load():
		return fmt.Errorf("%w: memory peer closed", spear.ErrChannelClosed)
	}
	return nil
}

// Close implements transport.Conn.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		close(c.done)
		c.wake()
		c.peer.wake()
	})
	return nil
}

// Info implements transport.Conn.
func (c *Conn) Info() transport.Info {
	return transport.Info{Transport: Name, Remote: "in-process", PeerPID: -1, PeerUID: -1}
}

func init() {
	transport.Register(transport.Transport{
		Name:      Name,
		InProcess: true,
		Listen: func(cfg transport.ListenConfig) (transport.Listener, error) {
			return listen(cfg.WriteTimeout), nil
		},
		Dial: func(ctx context.Context, addr string, _ transport.DialConfig) (transport.Conn, error) {
			return Dial(ctx, addr)
		},
	})
}
