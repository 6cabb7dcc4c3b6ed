package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spear-go/spear/proto/transportpb"
)

// rawUnix is the physical limit: a fixed-size ping-pong over a unix
// socket with no framing, no ids and no allocation per round trip.
type rawUnix struct {
	dir        string
	ln         net.Listener
	conn, peer net.Conn
	out, in    []byte
	served     sync.WaitGroup
}

func newRawUnix(size int) (*rawUnix, error) {
	dir, err := os.MkdirTemp("", "spear-bench-")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "raw.sock"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r := &rawUnix{dir: dir, ln: ln, out: payload(size), in: make([]byte, size)}
	accepted := make(chan net.Conn, 1)
	r.served.Add(1)
	go func() {
		defer r.served.Done()
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
		echo(c, size)
	}()
	r.conn, err = net.Dial("unix", ln.Addr().String())
	if err != nil {
		ln.Close() // fails the Accept
	}
	r.peer = <-accepted
	if r.conn == nil || r.peer == nil {
		r.close()
		return nil, fmt.Errorf("bench: raw unix connection: %w", err)
	}
	return r, nil
}

// echo sends back every size bytes it reads until the connection ends.
func echo(c net.Conn, size int) {
	buf := make([]byte, size)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

func (r *rawUnix) roundTrip() error {
	if _, err := r.conn.Write(r.out); err != nil {
		return err
	}
	_, err := io.ReadFull(r.conn, r.in)
	return err
}

func (r *rawUnix) close() {
	for _, c := range []net.Conn{r.conn, r.peer} {
		if c != nil {
			c.Close()
		}
	}
	r.ln.Close()
	r.served.Wait()
	os.RemoveAll(r.dir)
}

// grpcEcho serves the generated FrameTransport service as a plain echo:
// every message a stream receives is sent straight back.
type grpcEcho struct {
	transportpb.UnimplementedFrameTransportServer
}

func (grpcEcho) Connect(s transportpb.FrameTransport_ConnectServer) error {
	for {
		m, err := s.Recv()
		if err != nil {
			return nil
		}
		if err := s.Send(m); err != nil {
			return nil
		}
	}
}

// echoUnary is a unary method declared by hand, without protoc: it
// answers a transportpb.Frame with itself.
var echoUnary = grpc.ServiceDesc{
	ServiceName: "spearbench.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			m := new(transportpb.Frame)
			if err := dec(m); err != nil {
				return nil, err
			}
			return m, nil
		},
	}},
}

const echoMethod = "/spearbench.Echo/Echo"

// grpcServer is a grpc-go server with both echo services and one client
// connection to it.
type grpcServer struct {
	srv    *grpc.Server
	cc     *grpc.ClientConn
	dir    string // socket directory, for a unix listener
	served sync.WaitGroup
}

// newGRPCServer serves on network ("tcp" on loopback, or "unix").
func newGRPCServer(network string) (*grpcServer, error) {
	g := &grpcServer{srv: grpc.NewServer()}
	g.srv.RegisterService(&transportpb.FrameTransport_ServiceDesc, grpcEcho{})
	g.srv.RegisterService(&echoUnary, struct{}{})
	var ln net.Listener
	var err error
	target := ""
	if network == "unix" {
		if g.dir, err = os.MkdirTemp("", "spear-bench-"); err != nil {
			return nil, err
		}
		path := filepath.Join(g.dir, "grpc.sock")
		ln, err = net.Listen("unix", path)
		target = "unix://" + path
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			target = ln.Addr().String()
		}
	}
	if err != nil {
		g.close()
		return nil, err
	}
	g.served.Add(1)
	go func() {
		defer g.served.Done()
		_ = g.srv.Serve(ln)
	}()
	g.cc, err = grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

func (g *grpcServer) close() {
	if g.cc != nil {
		g.cc.Close()
	}
	g.srv.Stop()
	g.served.Wait()
	if g.dir != "" {
		os.RemoveAll(g.dir)
	}
}

// grpcStream is a ping-pong over one grpc-go bidirectional stream on
// loopback tcp, the same service and network our grpc channel uses.
type grpcStream struct {
	*grpcServer
	stream transportpb.FrameTransport_ConnectClient
	cancel context.CancelFunc
	msg    *transportpb.Frame
	size   int
}

func newGRPCStream(ctx context.Context, size int) (*grpcStream, error) {
	g, err := newGRPCServer("tcp")
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	stream, err := transportpb.NewFrameTransportClient(g.cc).Connect(sctx, grpc.WaitForReady(true))
	if err != nil {
		cancel()
		g.close()
		return nil, err
	}
	return &grpcStream{grpcServer: g, stream: stream, cancel: cancel, msg: &transportpb.Frame{Data: payload(size)}, size: size}, nil
}

func (s *grpcStream) roundTrip() error {
	if err := s.stream.Send(s.msg); err != nil {
		return err
	}
	m, err := s.stream.Recv()
	if err != nil {
		return err
	}
	if len(m.Data) != s.size {
		return errShortEcho
	}
	return nil
}

func (s *grpcStream) close() {
	s.cancel()
	s.grpcServer.close()
}

// grpcUnary makes unary calls on one grpc-go connection over a unix
// socket, the same kind of socket as the channel it is compared with.
type grpcUnary struct {
	*grpcServer
	msg []byte
}

func newGRPCUnary(ctx context.Context, size int) (*grpcUnary, error) {
	g, err := newGRPCServer("unix")
	if err != nil {
		return nil, err
	}
	u := &grpcUnary{grpcServer: g, msg: payload(size)}
	// Connect before timing starts.
	if err := g.cc.Invoke(ctx, echoMethod, &transportpb.Frame{}, new(transportpb.Frame), grpc.WaitForReady(true)); err != nil {
		g.close()
		return nil, err
	}
	return u, nil
}

// call makes one unary call. Callers share the payload, as they share
// the invocation in the channel's operation, but not the messages.
func (u *grpcUnary) call() error {
	in := &transportpb.Frame{Data: u.msg}
	out := new(transportpb.Frame)
	if err := u.cc.Invoke(context.Background(), echoMethod, in, out); err != nil {
		return err
	}
	if len(out.Data) != len(u.msg) {
		return errShortEcho
	}
	return nil
}

// goChan is a ping-pong between two goroutines over unbuffered Go
// channels: the floor for anything in-process.
type goChan struct {
	req, resp chan []byte
	msg       []byte
}

func newGoChan(size int) *goChan {
	g := &goChan{req: make(chan []byte), resp: make(chan []byte), msg: payload(size)}
	go func() {
		for b := range g.req {
			g.resp <- b
		}
		close(g.resp)
	}()
	return g
}

func (g *goChan) roundTrip() error {
	g.req <- g.msg
	if len(<-g.resp) != len(g.msg) {
		return errShortEcho
	}
	return nil
}

func (g *goChan) close() {
	close(g.req)
	for range g.resp {
	}
}
