// Package tcp is the tcp transport. The agent runs one listener for all
// instances and routes each connection by the instance id it authenticates
// as (see docs/architecture.md for why not a port per instance).
package tcp

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
)

// Name is the transport's name.
const Name = "tcp"

// Options tune connections. The zero value means the defaults.
type Options struct {
	MaxPayload   uint32        // largest incoming payload; 0 means wire.DefaultMaxPayload
	WriteTimeout time.Duration // 0 means transport.DefaultWriteTimeout
	// TLS, when set, runs every connection over TLS: the server side for
	// Listen (its handshake runs in the connection's first read or write,
	// in the caller's goroutine, not in Accept), the client side for Dial
	// (which completes the handshake within its context).
	TLS *tls.Config
}

// Listener accepts tcp connections.
type Listener struct {
	ln   net.Listener
	opts Options
}

var _ transport.Listener = (*Listener)(nil)

// Listen listens on addr, for example "127.0.0.1:0" for an ephemeral port
// on loopback.
func Listen(addr string, opts Options) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: listen on tcp %s: %w", spear.ErrTransport, addr, err)
	}
	return &Listener{ln: ln, opts: opts}, nil
}

// Accept implements transport.Listener.
func (l *Listener) Accept() (transport.Conn, error) {
	c, err := l.ln.Accept()
	if err != nil {
		return nil, transport.FilterCloseErr(err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if l.opts.TLS != nil {
		c = tls.Server(c, l.opts.TLS)
	}
	return wrap(c, l.opts), nil
}

// Close implements transport.Listener.
func (l *Listener) Close() error { return l.ln.Close() }

// Addr returns the listening address, host:port.
func (l *Listener) Addr() string { return l.ln.Addr().String() }

// Dial connects to addr.
func Dial(ctx context.Context, addr string, opts Options) (transport.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: dial tcp %s: %w", spear.ErrConnectionFailed, addr, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if opts.TLS != nil {
		tc := tls.Client(c, opts.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("%w: tls handshake with %s: %w", spear.ErrConnectionFailed, addr, err)
		}
		c = tc
	}
	return wrap(c, opts), nil
}

func wrap(c net.Conn, opts Options) *transport.StreamConn {
	return transport.NewStreamConn(c, transport.Info{Transport: Name, PeerPID: -1, PeerUID: -1}, opts.MaxPayload, opts.WriteTimeout)
}

// DefaultAddr is where the listener goes when none is configured: loopback,
// an ephemeral port.
const DefaultAddr = "127.0.0.1:0"

func init() {
	transport.Register(transport.Transport{
		Name:   Name,
		Shared: true,
		TLS:    true,
		Listen: func(cfg transport.ListenConfig) (transport.Listener, error) {
			return Listen(cmp.Or(cfg.Addr, DefaultAddr), Options{MaxPayload: cfg.MaxPayload, WriteTimeout: cfg.WriteTimeout, TLS: cfg.TLS})
		},
		Dial: func(ctx context.Context, addr string, cfg transport.DialConfig) (transport.Conn, error) {
			return Dial(ctx, addr, Options{MaxPayload: cfg.MaxPayload, WriteTimeout: cfg.WriteTimeout, TLS: cfg.TLS})
		},
	})
}
