package grpc_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
	grpctransport "github.com/spear-go/spear/transport/grpc"
	"github.com/spear-go/spear/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connect returns a listener and both ends of one stream through it.
func connect(t *testing.T, server, client grpctransport.Options) (*grpctransport.Listener, transport.Conn, transport.Conn) {
	t.Helper()
	l, err := grpctransport.Listen("127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted := make(chan transport.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c, err := grpctransport.Dial(testContext(t), l.Addr(), client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The server sees the stream once the first frame arrives.
	if err := c.WriteFrame(&wire.Frame{Type: wire.TypeHeartbeat}); err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { s.Close() })
	if f, err := s.ReadFrame(); err != nil || f.Type != wire.TypeHeartbeat {
		t.Fatalf("first frame: %+v, %v", f, err)
	}
	return l, s, c
}

func TestRoundTrip(t *testing.T) {
	_, server, client := connect(t, grpctransport.Options{}, grpctransport.Options{})
	big := make([]byte, 200<<10)
	for i := range big {
		big[i] = byte(i % 253)
	}
	for i, p := range [][]byte{nil, []byte("x"), big} {
		sent := &wire.Frame{Type: wire.TypeStreamData, Flags: wire.FlagEnd, ID: uint64(2*i + 1), Payload: p}
		if err := server.WriteFrame(sent); err != nil {
			t.Fatal(err)
		}
		f, err := client.ReadFrame()
		if err != nil || f.Type != sent.Type || f.Flags != sent.Flags || f.ID != sent.ID || string(f.Payload) != string(p) {
			t.Fatalf("frame %d: got %s flags %d id %d with %d bytes, %v", i, f.Type, f.Flags, f.ID, len(f.Payload), err)
		}
	}
	if info := server.Info(); info.Transport != grpctransport.Name || info.Remote == "" {
		t.Errorf("server Info() = %+v", info)
	}
}

func TestCloseUnblocksReadFrame(t *testing.T) {
	for _, side := range []string{"client", "server"} {
		t.Run(side, func(t *testing.T) {
			_, server, client := connect(t, grpctransport.Options{}, grpctransport.Options{})
			self, peer := client, server
			if side == "server" {
				self, peer = server, client
			}
			errc := make(chan error, 1)
			go func() { _, err := self.ReadFrame(); errc <- err }()
			self.Close()
			self.Close()
			ctx := testContext(t)
			select {
			case err := <-errc:
				if !errors.Is(err, spear.ErrChannelClosed) {
					t.Fatalf("ReadFrame after Close: %v, want spear.ErrChannelClosed", err)
				}
			case <-ctx.Done():
				t.Fatal("Close did not unblock ReadFrame")
			}
			// The other end learns the stream ended.
			go func() { _, err := peer.ReadFrame(); errc <- err }()
			select {
			case err := <-errc:
				if !errors.Is(err, spear.ErrChannelClosed) {
					t.Fatalf("peer ReadFrame: %v, want spear.ErrChannelClosed", err)
				}
			case <-ctx.Done():
				t.Fatal("the peer did not see the stream end")
			}
		})
	}
}

func TestListenerCloseEndsStreams(t *testing.T) {
	l, _, client := connect(t, grpctransport.Options{}, grpctransport.Options{})
	l.Close()
	if _, err := client.ReadFrame(); !errors.Is(err, spear.ErrChannelClosed) {
		t.Fatalf("client ReadFrame after the listener closed: %v, want spear.ErrChannelClosed", err)
	}
	if _, err := l.Accept(); !errors.Is(err, spear.ErrChannelClosed) {
		t.Fatalf("Accept after Close: %v, want spear.ErrChannelClosed", err)
	}
}

func TestOversizedFrameRejected(t *testing.T) {
	// The server's limit is 64 bytes of payload; a 70-byte payload still
	// fits the grpc message limit, which leaves room for the header, so it
	// is the frame decoder that must refuse it.
	_, server, client := connect(t, grpctransport.Options{MaxPayload: 64}, grpctransport.Options{})
	if err := client.WriteFrame(&wire.Frame{Type: wire.TypeMessage, Payload: make([]byte, 70)}); err != nil {
		t.Fatal(err)
	}
	var tooLarge *wire.FrameTooLargeError
	if _, err := server.ReadFrame(); !errors.As(err, &tooLarge) || tooLarge.Length != 70 || tooLarge.Max != 64 {
		t.Fatalf("oversized frame: %v, want *wire.FrameTooLargeError{70, 64}", err)
	}
}

func TestDialUnreachable(t *testing.T) {
	l, err := grpctransport.Listen("127.0.0.1:0", grpctransport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := grpctransport.Dial(ctx, addr, grpctransport.Options{}); !errors.Is(err, spear.ErrConnectionFailed) {
		t.Fatalf("dial with nothing listening: %v, want spear.ErrConnectionFailed", err)
	}
}

// A connection that carries no stream is closed at the idle deadline,
// whether it never spoke, or finished its HTTP/2 handshake and opened
// nothing; one with a stream stays, and gets the deadline again when its
// stream ends. (Before, grpc-go held the first for its 120 s connection
// timeout and the second for ever.)
func TestIdleConnectionsDropped(t *testing.T) {
	l, err := grpctransport.Listen("127.0.0.1:0", grpctransport.Options{IdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	raw, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.Copy(io.Discard, raw); err != nil {
		t.Errorf("silent connection: %v, want it closed by the server", err)
	}

	cc, err := grpc.NewClient(l.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := testContext(t)
	cc.Connect()
	for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
		if !cc.WaitForStateChange(ctx, s) {
			t.Fatal("never ready")
		}
	}
	// Ready, no stream: dropped, the client sees its connection go.
	if !cc.WaitForStateChange(ctx, connectivity.Ready) {
		t.Error("a connection without a stream was kept")
	}

	// A connection with a stream stays past the deadline.
	accepted := make(chan transport.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c, err := grpctransport.Dial(ctx, l.Addr(), grpctransport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	defer s.Close()
	time.Sleep(time.Second) // several deadlines: a state to observe, not a timing assertion
	if err := c.WriteFrame(&wire.Frame{Type: wire.TypeMessage, Payload: []byte("still here")}); err != nil {
		t.Fatal(err)
	}
	if f, err := s.ReadFrame(); err != nil || string(f.Payload) != "still here" {
		t.Errorf("stream after the deadline: %q, %v", f.Payload, err)
	}
}
