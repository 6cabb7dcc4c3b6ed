// Package grpc is the grpc transport: each instance connection is one
// bidirectional stream of the spear.v1.FrameTransport service, and each
// grpc message carries one frame encoded exactly as on a socket, so every
// frame passes the same decoder and limits as on the other transports.
package grpc

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/admit"
	"github.com/spear-go/spear/proto/transportpb"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// Name is the transport's name.
const Name = "grpc"

// Options tune connections. The zero value means the defaults.
type Options struct {
	MaxPayload uint32 // largest incoming payload; 0 means wire.DefaultMaxPayload
	// WriteTimeout bounds a write to a peer that stopped reading; 0 means
	// transport.DefaultWriteTimeout.
	WriteTimeout time.Duration
	// TLS, when set, runs the connections over TLS: the server side for
	// Listen and Serve, the client side for Dial. Without it they are
	// plaintext (authentication is the protocol's handshake).
	TLS *tls.Config
	// IdleTimeout bounds how long a connection may stay open without a
	// stream (from its accept, and again after its last stream ends):
	// it is closed then, TLS or HTTP/2 handshake done or not. A stream's
	// own handshake is bounded above the transport. 0 means
	// transport.DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ServerOptions are added to the listener's grpc server.
	ServerOptions []grpc.ServerOption
	// DialOptions are added when dialing.
	DialOptions []grpc.DialOption
}

func (o Options) maxPayload() uint32 {
	if o.MaxPayload == 0 {
		return wire.DefaultMaxPayload
	}
	return o.MaxPayload
}

// msgLimit is the grpc message limit that fits one frame of the largest
// payload plus the protobuf wrapping.
func (o Options) msgLimit() int { return int(o.maxPayload()) + wire.HeaderSize + 16 }

// Listener serves the FrameTransport service and hands out each stream as a
// connection.
type Listener struct {
	transportpb.UnimplementedFrameTransportServer
	ln     *admit.Listener
	srv    *grpc.Server
	opts   Options
	conns  chan *Conn
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

var _ transport.Listener = (*Listener)(nil)

// Listen starts a grpc server on addr.
func Listen(addr string, opts Options) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: listen on grpc %s: %w", spear.ErrTransport, addr, err)
	}
	return Serve(ln, opts), nil
}

// Serve serves the transport on ln, a TCP listener. Every connection
// must carry a stream within opts.IdleTimeout of its accept, and again of
// its last stream's end, or it is closed.
func Serve(ln net.Listener, opts Options) *Listener {
	al := admit.NewListener(ln, cmp.Or(opts.IdleTimeout, transport.DefaultIdleTimeout))
	l := &Listener{ln: al, opts: opts, conns: make(chan *Conn), closed: make(chan struct{})}
	sopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(opts.msgLimit()),
		grpc.MaxSendMsgSize(opts.msgLimit()),
	}
	if opts.TLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	l.srv = grpc.NewServer(append(sopts, opts.ServerOptions...)...)
	transportpb.RegisterFrameTransportServer(l.srv, l)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		_ = l.srv.Serve(al)
	}()
	return l
}

// Connect implements the FrameTransport service: it hands the stream to
// Accept and holds it open until the connection is closed.
func (l *Listener) Connect(stream transportpb.FrameTransport_ConnectServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	remote := ""
	var tlsState *tls.ConnectionState
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr.String()
		defer l.ln.Hold(p.Addr)()
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			tlsState = &ti.State
		}
	}
	c := newConn(stream, cancel, remote, l.opts)
	c.tls = tlsState
	select {
	case l.conns <- c:
	case <-l.closed:
		return fmt.Errorf("%w: listener closed", spear.ErrChannelClosed)
	case <-ctx.Done():
		return ctx.Err()
	}
	<-ctx.Done()
	return nil
}

// Accept implements transport.Listener.
func (l *Listener) Accept() (transport.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, fmt.Errorf("%w: grpc listener closed", spear.ErrChannelClosed)
	}
}

// Close stops the server at once, closing every stream, and waits for it.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.srv.Stop()
		l.wg.Wait()
	})
	return nil
}

// Addr returns the listening address, host:port.
func (l *Listener) Addr() string { return l.ln.Addr().String() }

// Dial opens a stream to the FrameTransport service at addr. The grpc
// client connection belongs to the returned Conn and closes with it.
func Dial(ctx context.Context, addr string, opts Options) (transport.Conn, error) {
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		creds = credentials.NewTLS(opts.TLS)
	}
	dopts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(opts.msgLimit()), grpc.MaxCallSendMsgSize(opts.msgLimit())),
	}, opts.DialOptions...)
	cc, err := grpc.NewClient(addr, dopts...)
	if err != nil {
		return nil, fmt.Errorf("%w: grpc client for %s: %w", spear.ErrConnectionFailed, addr, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	// The stream outlives ctx, which only bounds connecting.
	stop := context.AfterFunc(ctx, cancel)
	stream, err := transportpb.NewFrameTransportClient(cc).Connect(sctx, grpc.WaitForReady(true))
	if !stop() || err != nil {
		cancel()
		cc.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("%w: grpc connect to %s: %w", spear.ErrConnectionFailed, addr, err)
	}
	c := newConn(stream, func() { cancel(); cc.Close() }, addr, opts)
	c.closeSend = stream.CloseSend
	return c, nil
}

// frameStream is what the client and server streams have in common.
type frameStream interface {
	Send(*transportpb.Frame) error
	Recv() (*transportpb.Frame, error)
}

// Conn is one grpc stream as a transport.Conn.
type Conn struct {
	stream       frameStream
	stop         func() // ends the stream at once
	remote       string
	tls          *tls.ConnectionState // the server side's, over TLS
	maxPayload   uint32
	writeTimeout time.Duration
	once         sync.Once
	closed       chan struct{}
	// closeSend half-closes a client stream; nil on the server side.
	closeSend func() error

	wmu      sync.Mutex  // grpc allows one Send at a time
	timedOut atomic.Bool // a Send outlived writeTimeout, and the stream was ended

	// The write watchdog. Arming a timer around every Send would cost two
	// timer operations a frame; instead the timer, once armed, stays armed
	// while writes keep coming, and when it fires looks at the Send in
	// progress, if any: one older than writeTimeout ends the stream.
	tmu    sync.Mutex  // guards the fields below
	wtimer *time.Timer // fires watchdog
	armed  bool        // wtimer is set to fire
	wstart time.Time   // when the Send in progress began; zero when none

	rmu sync.Mutex // grpc allows one Recv at a time; held by a waiting ReadFrame
}

// closeGrace bounds how long a client's Close waits for the server to see
// its half-close, so that frames written just before Close (a CLOSE frame
// saying goodbye) are delivered rather than cut off by the cancellation.
const closeGrace = time.Second

var _ transport.Conn = (*Conn)(nil)

func newConn(s frameStream, stop func(), remote string, opts Options) *Conn {
	c := &Conn{stream: s, stop: stop, remote: remote, maxPayload: opts.maxPayload(),
		writeTimeout: cmp.Or(opts.WriteTimeout, transport.DefaultWriteTimeout),
		closed:       make(chan struct{})}
	c.wtimer = time.AfterFunc(time.Hour, c.watchdog)
	c.wtimer.Stop()
	return c
}

// watchdog ends the stream under a Send that has waited writeTimeout for a
// peer that stopped reading (grpc flow control holds it back), and keeps
// itself armed while writes go on.
func (c *Conn) watchdog() {
	c.tmu.Lock()
	if c.wstart.IsZero() {
		c.armed = false
		c.tmu.Unlock()
		return
	}
	if left := c.writeTimeout - time.Since(c.wstart); left > 0 {
		c.wtimer.Reset(left)
		c.tmu.Unlock()
		return
	}
	c.tmu.Unlock()
	c.timedOut.Store(true)
	c.stop()
}

// writing marks a Send starting (begin) or ended.
func (c *Conn) writing(begin bool) {
	c.tmu.Lock()
	if !begin {
		c.wstart = time.Time{}
	} else {
		c.wstart = time.Now()
		if !c.armed {
			c.armed = true
			c.wtimer.Reset(c.writeTimeout)
		}
	}
	c.tmu.Unlock()
}

// ReadFrame implements transport.Conn.
func (c *Conn) ReadFrame() (wire.Frame, error) {
	c.rmu.Lock()
	m, err := c.recv()
	c.rmu.Unlock()
	if err != nil {
		return wire.Frame{}, err
	}
	return wire.Decode(m.Data, c.maxPayload)
}

// recv receives one message; c.rmu must be held.
func (c *Conn) recv() (*transportpb.Frame, error) {
	select {
	case <-c.closed:
		return nil, fmt.Errorf("%w: grpc stream closed", spear.ErrChannelClosed)
	default:
	}
	m, err := c.stream.Recv()
	if err != nil {
		return nil, c.filter(err)
	}
	return m, nil
}

// WriteFrame implements transport.Conn. A Send that waits longer than the
// write timeout for a peer that stopped reading ends the stream and fails
// with an error matching spear.ErrTimeout.
func (c *Conn) WriteFrame(f *wire.Frame) error {
	select {
	case <-c.closed: // the server's stream may take Sends until its handler returns
		return fmt.Errorf("%w: grpc stream closed", spear.ErrChannelClosed)
	default:
	}
	m := &transportpb.Frame{Data: wire.AppendFrame(make([]byte, 0, f.Size()), f)}
	c.wmu.Lock()
	c.writing(true)
	err := c.stream.Send(m)
	c.writing(false)
	c.wmu.Unlock()
	if err != nil {
		if c.timedOut.Load() {
			return fmt.Errorf("%w: write: peer not reading for %s: %w", spear.ErrTimeout, c.writeTimeout, err)
		}
		return c.filter(err)
	}
	return nil
}

func (c *Conn) filter(err error) error {
	select {
	case <-c.closed:
		return fmt.Errorf("%w: grpc stream closed: %w", spear.ErrChannelClosed, err)
	default:
	}
	return transport.FilterCloseErr(fmt.Errorf("%w: grpc stream: %w", spear.ErrChannelClosed, err))
}

// Close implements transport.Conn.
func (c *Conn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		// A client half-closes first and gives the server a moment to end
		// the stream, unless a Send is stuck (the peer not reading), so
		// that what it wrote last is delivered, not cut off.
		if c.closeSend != nil && c.wmu.TryLock() {
			err := c.closeSend()
			c.wmu.Unlock()
			if err == nil {
				c.awaitEnd()
			}
		}
		c.stop()
		c.tmu.Lock()
		c.wtimer.Stop()
		c.armed = false
		c.tmu.Unlock()
	})
	return nil
}

// awaitEnd waits, at most closeGrace, for the server to end a stream the
// client half-closed, reading (and dropping) what is left. A ReadFrame
// under way goes first: it returns when the stream ends or the grace runs
// out, and any ReadFrame after it fails at once, the Conn being closed.
func (c *Conn) awaitEnd() {
	t := time.AfterFunc(closeGrace, c.stop)
	defer t.Stop()
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if _, err := c.stream.Recv(); err != nil {
			return
		}
	}
}

// Info implements transport.Conn.
func (c *Conn) Info() transport.Info {
	return transport.Info{Transport: Name, Remote: c.remote, PeerPID: -1, PeerUID: -1, TLS: c.tls}
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
			return Listen(cmp.Or(cfg.Addr, DefaultAddr), Options{MaxPayload: cfg.MaxPayload, WriteTimeout: cfg.WriteTimeout,
				TLS: cfg.TLS, IdleTimeout: cfg.IdleTimeout})
		},
		Dial: func(ctx context.Context, addr string, cfg transport.DialConfig) (transport.Conn, error) {
			return Dial(ctx, addr, Options{MaxPayload: cfg.MaxPayload, WriteTimeout: cfg.WriteTimeout, TLS: cfg.TLS})
		},
	})
}
