// Package memory is the in-process transport, used by the wasm runtime and
// by tests. Addresses live in a process-wide table, as ports do for tcp;
// frames move through Go channels without being encoded.
package memory

import (
	"cmp"
	"context"
	"fmt"
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
type Conn struct {
	in, out      chan wire.Frame
	done         chan struct{} // closed when this end closes
	peerDone     chan struct{} // closed when the other end closes
	writeTimeout time.Duration
	once         sync.Once
	timedOut     atomic.Bool // a write waited writeTimeout, and closed the connection
}

var _ transport.Conn = (*Conn)(nil)

// Pipe returns the two ends of a new in-process connection, which bound a
// write to a peer that stopped reading by transport.DefaultWriteTimeout.
func Pipe() (*Conn, *Conn) { return pipe(transport.DefaultWriteTimeout) }

func pipe(writeTimeout time.Duration) (*Conn, *Conn) {
	ab, ba := make(chan wire.Frame, queueLen), make(chan wire.Frame, queueLen)
	aDone, bDone := make(chan struct{}), make(chan struct{})
	a := &Conn{in: ba, out: ab, done: aDone, peerDone: bDone, writeTimeout: writeTimeout}
	b := &Conn{in: ab, out: ba, done: bDone, peerDone: aDone, writeTimeout: writeTimeout}
	return a, b
}

// ReadFrame implements transport.Conn. Frames the peer wrote before closing
// are still delivered.
func (c *Conn) ReadFrame() (wire.Frame, error) {
	select {
	case f := <-c.in:
		return f, nil
	default:
	}
	select {
	case f := <-c.in:
		return f, nil
	case <-c.done:
		return wire.Frame{}, fmt.Errorf("%w: memory connection closed", spear.ErrChannelClosed)
	case <-c.peerDone:
		select {
		case f := <-c.in:
			return f, nil
		default:
			return wire.Frame{}, fmt.Errorf("%w: memory peer closed", spear.ErrChannelClosed)
		}
	}
}

// WriteFrame implements transport.Conn. The payload is copied, so the
// caller may reuse it. A write that waits the write timeout for a peer that
// stopped reading closes the connection and fails with an error matching
// spear.ErrTimeout.
func (c *Conn) WriteFrame(f *wire.Frame) error {
	g := *f
	if len(f.Payload) > 0 {
		g.Payload = append([]byte(nil), f.Payload...)
	}
	if err := c.closedErr(); err != nil {
		return err
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
		return c.closedErr()
	case <-c.peerDone:
		return c.closedErr()
	case <-t.C:
		c.timedOut.Store(true)
		c.Close()
		return fmt.Errorf("%w: write: memory peer not reading for %s", spear.ErrTimeout, c.writeTimeout)
	}
}

// closedErr returns the error for a closed connection, or nil while it is
// open.
func (c *Conn) closedErr() error {
	select {
	case <-c.done:
		if c.timedOut.Load() {
			return fmt.Errorf("%w: memory connection closed after a write timed out", spear.ErrChannelClosed)
		}
		return fmt.Errorf("%w: memory connection closed", spear.ErrChannelClosed)
	case <-c.peerDone:
		return fmt.Errorf("%w: memory peer closed", spear.ErrChannelClosed)
	default:
		return nil
	}
}

// Close implements transport.Conn.
func (c *Conn) Close() error {
	c.once.Do(func() { close(c.done) })
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
