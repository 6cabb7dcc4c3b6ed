// Package admit drops connections that do not prove themselves in time.
//
// A Listener wraps a net.Listener. Every connection it accepts carries a
// deadline: unless the server admits it (Admit: it has authenticated) or
// holds it (Hold: it has work under way, such as an open stream) before
// the deadline, the connection is closed then, whatever state the protocol
// above it is in: a peer that never speaks, one stuck in a TLS handshake,
// or an HTTP/2 connection that opens no stream all cost a descriptor for
// at most the deadline. A held connection that is released without being
// admitted gets a fresh deadline.
//
// Servers that do not hand the net.Conn to their handlers (grpc-go) find
// the connection again by its remote address, which is unique among the
// live connections of one TCP listener. Unix sockets have no such
// address; wrap TCP listeners only.
//
// Each connection has one timer and no goroutine.
package admit

import (
	"net"
	"sync"
	"time"
)

// Listener is a net.Listener whose connections must be admitted or held
// before their deadline. It is safe for concurrent use.
type Listener struct {
	net.Listener
	timeout time.Duration

	mu    sync.Mutex       // guards conns
	conns map[string]*Conn // by remote address, until closed or admitted
}

// NewListener wraps ln; timeout is each connection's deadline, counted
// from Accept.
func NewListener(ln net.Listener, timeout time.Duration) *Listener {
	return &Listener{Listener: ln, timeout: timeout, conns: map[string]*Conn{}}
}

// Accept waits for the next connection and starts its deadline.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ac := &Conn{Conn: c, l: l, key: c.RemoteAddr().String()}
	l.mu.Lock()
	l.conns[ac.key] = ac
	l.mu.Unlock()
	ac.mu.Lock()
	ac.timer = time.AfterFunc(l.timeout, ac.expire)
	ac.mu.Unlock()
	return ac, nil
}

// lookup returns the pending connection from remote, or nil.
func (l *Listener) lookup(remote net.Addr) *Conn {
	if remote == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[remote.String()]
}

func (l *Listener) forget(c *Conn) {
	l.mu.Lock()
	if l.conns[c.key] == c {
		delete(l.conns, c.key)
	}
	l.mu.Unlock()
}

// Admit marks the connection from remote as proven: it is never closed
// for its deadline again. A remote the listener does not know (closed
// already, or admitted) is ignored.
func (l *Listener) Admit(remote net.Addr) {
	if c := l.lookup(remote); c != nil {
		c.Admit()
	}
}

// Hold keeps the connection from remote open until release is called,
// deadline or not; holds nest. Once the last hold is released, a
// connection not admitted meanwhile gets a fresh deadline. For a remote
// the listener does not know, release does nothing.
func (l *Listener) Hold(remote net.Addr) (release func()) {
	c := l.lookup(remote)
	if c == nil {
		return func() {}
	}
	return c.Hold()
}

// Conn is a connection accepted by a Listener.
type Conn struct {
	net.Conn
	l   *Listener
	key string

	mu       sync.Mutex // guards the fields below
	timer    *time.Timer
	holds    int
	admitted bool
	closed   bool
}

// Admit marks c as proven: its deadline no longer applies.
func (c *Conn) Admit() { c.settle(&c.admitted) }

// settle sets *state (admitted or closed) and ends c's deadline for good.
func (c *Conn) settle(state *bool) {
	c.mu.Lock()
	*state = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	c.l.forget(c)
}

// Hold keeps c open until release is called; see Listener.Hold.
func (c *Conn) Hold() (release func()) {
	c.mu.Lock()
	c.holds++
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.holds--
			if c.holds == 0 && !c.admitted && !c.closed {
				c.timer.Reset(c.l.timeout)
			}
			c.mu.Unlock()
		})
	}
}

// expire closes c unless it is admitted or held.
func (c *Conn) expire() {
	c.mu.Lock()
	drop := !c.admitted && c.holds == 0 && !c.closed
	c.mu.Unlock()
	if drop {
		c.Close()
	}
}

// Close closes the connection and stops its deadline.
func (c *Conn) Close() error {
	c.settle(&c.closed)
	return c.Conn.Close()
}

// NetConn returns the wrapped connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }
