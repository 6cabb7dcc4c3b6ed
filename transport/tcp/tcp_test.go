package tcp_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/transport/tcp"
	"github.com/spear-go/spear/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := tcp.Listen("127.0.0.1:0", tcp.Options{MaxPayload: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan transport.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	client, err := tcp.Dial(ctx, l.Addr(), tcp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		t.FailNow()
	}
	defer server.Close()
	if info := server.Info(); info.Transport != tcp.Name || info.Remote == "" || info.PeerPID != -1 {
		t.Errorf("server Info() = %+v", info)
	}

	big := make([]byte, 300<<10)
	for i := range big {
		big[i] = byte(i % 251)
	}
	for i, p := range [][]byte{nil, []byte("small"), big} {
		if err := client.WriteFrame(&wire.Frame{Type: wire.TypeExecuteRequest, ID: uint64(2 * i), Payload: p}); err != nil {
			t.Fatal(err)
		}
		f, err := server.ReadFrame()
		if err != nil || f.ID != uint64(2*i) || string(f.Payload) != string(p) {
			t.Fatalf("frame %d: got id %d with %d bytes, %v", i, f.ID, len(f.Payload), err)
		}
		if err := server.WriteFrame(&wire.Frame{Type: wire.TypeExecuteResponse, ID: f.ID, Payload: f.Payload}); err != nil {
			t.Fatal(err)
		}
		if g, err := client.ReadFrame(); err != nil || g.ID != f.ID || string(g.Payload) != string(p) {
			t.Fatalf("echo %d: got id %d with %d bytes, %v", i, g.ID, len(g.Payload), err)
		}
	}

	// The listener's payload limit applies to what it accepts.
	if err := client.WriteFrame(&wire.Frame{Type: wire.TypeMessage, Payload: make([]byte, 1<<20+1)}); err != nil {
		t.Fatal(err)
	}
	var tooLarge *wire.FrameTooLargeError
	if _, err := server.ReadFrame(); !errors.As(err, &tooLarge) {
		t.Fatalf("oversized frame: %v, want *wire.FrameTooLargeError", err)
	}

	client.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Accept(); !errors.Is(err, spear.ErrChannelClosed) {
		t.Errorf("Accept after Close: %v, want spear.ErrChannelClosed", err)
	}
}

func TestDialRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := tcp.Listen("127.0.0.1:0", tcp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr()
	l.Close() // nothing listens there now
	if _, err := tcp.Dial(ctx, addr, tcp.Options{}); !errors.Is(err, spear.ErrConnectionFailed) {
		t.Fatalf("dial a closed port: %v, want spear.ErrConnectionFailed", err)
	}
	if _, err := tcp.Listen("not an address", tcp.Options{}); !errors.Is(err, spear.ErrTransport) {
		t.Fatalf("listen on a bad address: %v, want spear.ErrTransport", err)
	}
}
