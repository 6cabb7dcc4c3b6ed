package grpc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

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
