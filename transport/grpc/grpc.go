// Package grpc is the grpc transport: each instance connection is one
// bidirectional stream of the spear.v1.FrameTransport service, and each
// grpc message carries one frame encoded exactly as on a socket, so every
// frame passes the same decoder and limits as on the other transports.
package grpc

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/proto/transportpb"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// Name is the transport's name.
const Name = "grpc"

// Options tune connections. The zero value means the defaults.
type Options struct {
	MaxPayload uint32 // largest incoming payload; 0 means wire.DefaultMaxPayload
	// ServerOptions are added to the listener's grpc server, for example
	// TLS credentials.
	ServerOptions []grpc.ServerOption
	// DialOptions are added when dialing; without any, the connection is
	// plaintext (authentication is the protocol's handshake).
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
	ln     net.Listener
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

// Serve serves the transport on ln.
func Serve(ln net.Listener, opts Options) *Listener {
	l := &Listener{ln: ln, opts: opts, conns: make(chan *Conn), closed: make(chan struct{})}
	sopts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(opts.msgLimit()),
		grpc.MaxSendMsgSize(opts.msgLimit()),
	}, opts.ServerOptions...)
	l.srv = grpc.NewServer(sopts...)
	transportpb.RegisterFrameTransportServer(l.srv, l)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		_ = l.srv.Serve(ln)
	}()
	return l
}

// Connect implements the FrameTransport service: it hands the stream to
// Accept and holds it open until the connection is closed.
func (l *Listener) Connect(stream transportpb.FrameTransport_ConnectServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	remote := ""
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr.String()
	}
	c := newConn(stream, cancel, remote, l.opts.maxPayload())
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
	dopts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
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
	c := newConn(stream, func() { cancel(); cc.Close() }, addr, opts.maxPayload())
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
	stream     frameStream
	stop       func()
	remote     string
	maxPayload uint32
	wmu        sync.Mutex // grpc allows one Send at a time
	once       sync.Once
	closed     chan struct{}
	// closeSend half-closes a client stream; nil on the server side.
	closeSend func() error
	readOnce  sync.Once
	readDone  chan struct{} // closed when ReadFrame first fails
	reading   atomic.Bool   // a ReadFrame is waiting, and will see the end
}

// closeGrace bounds how long a client's Close waits for the server to see
// its half-close, so that frames written just before Close (a CLOSE frame
// saying goodbye) are delivered rather than cut off by the cancellation.
const closeGrace = time.Second

var _ transport.Conn = (*Conn)(nil)

func newConn(s frameStream, stop func(), remote string, maxPayload uint32) *Conn {
	return &Conn{stream: s, stop: stop, remote: remote, maxPayload: maxPayload,
		closed: make(chan struct{}), readDone: make(chan struct{})}
}

// ReadFrame implements transport.Conn.
func (c *Conn) ReadFrame() (wire.Frame, error) {
	c.reading.Store(true)
	m, err := c.stream.Recv()
	c.reading.Store(false)
	if err != nil {
		c.readOnce.Do(func() { close(c.readDone) })
		return wire.Frame{}, c.filter(err)
	}
	return wire.Decode(m.Data, c.maxPayload)
}

// WriteFrame implements transport.Conn.
func (c *Conn) WriteFrame(f *wire.Frame) error {
	m := &transportpb.Frame{Data: wire.AppendFrame(make([]byte, 0, f.Size()), f)}
	c.wmu.Lock()
	err := c.stream.Send(m)
	c.wmu.Unlock()
	if err != nil {
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
		// the stream, unless a Send is stuck (the peer not reading).
		if c.closeSend != nil && c.wmu.TryLock() {
			err := c.closeSend()
			c.wmu.Unlock()
			if err == nil && c.reading.Load() {
				t := time.NewTimer(closeGrace)
				select {
				case <-c.readDone:
				case <-t.C:
				}
				t.Stop()
			}
		}
		c.stop()
	})
	return nil
}

// Info implements transport.Conn.
func (c *Conn) Info() transport.Info {
	return transport.Info{Transport: Name, Remote: c.remote, PeerPID: -1, PeerUID: -1}
}

// DefaultAddr is where the listener goes when none is configured: loopback,
// an ephemeral port.
const DefaultAddr = "127.0.0.1:0"

func init() {
	transport.Register(transport.Transport{
		Name:   Name,
		Shared: true,
		Listen: func(cfg transport.ListenConfig) (transport.Listener, error) {
			return Listen(cmp.Or(cfg.Addr, DefaultAddr), Options{MaxPayload: cfg.MaxPayload})
		},
		Dial: func(ctx context.Context, addr string, cfg transport.DialConfig) (transport.Conn, error) {
			return Dial(ctx, addr, Options{MaxPayload: cfg.MaxPayload})
		},
	})
}
