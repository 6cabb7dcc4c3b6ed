package memory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/transport/memory"
	"github.com/spear-go/spear/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestListenDialRoundTrip(t *testing.T) {
	ctx := testContext(t)
	l := memory.Listen()
	defer l.Close()
	if other := memory.Listen(); other.Addr() == l.Addr() {
		t.Errorf("two listeners share address %s", l.Addr())
	} else {
		other.Close()
	}
	accepted := make(chan transport.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	client, err := memory.Dial(ctx, l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		t.FailNow()
	}
	defer server.Close()

	payload := []byte("ping")
	if err := client.WriteFrame(&wire.Frame{Type: wire.TypeExecuteRequest, Flags: wire.FlagStream, ID: 3, Payload: payload}); err != nil {
		t.Fatal(err)
	}
	copy(payload, "XXXX") // the transport copied the payload
	f, err := server.ReadFrame()
	if err != nil || f.Type != wire.TypeExecuteRequest || f.Flags != wire.FlagStream || f.ID != 3 || string(f.Payload) != "ping" {
		t.Fatalf("server read %+v, %v", f, err)
	}
	if err := server.WriteFrame(&wire.Frame{Type: wire.TypeExecuteResponse, ID: 3, Payload: []byte("pong")}); err != nil {
		t.Fatal(err)
	}
	if f, err := client.ReadFrame(); err != nil || f.ID != 3 || string(f.Payload) != "pong" {
		t.Fatalf("client read %+v, %v", f, err)
	}
	if info := client.Info(); info.Transport != memory.Name || info.PeerPID != -1 {
		t.Errorf("Info() = %+v", info)
	}
}

func TestFramesBeforeCloseAreDelivered(t *testing.T) {
	// The reader's select between "frame ready" and "peer closed" is
	// random, so repeat to exercise both orders.
	for range 200 {
		a, b := memory.Pipe()
		const n = 10
		for i := range n {
			if err := a.WriteFrame(&wire.Frame{Type: wire.TypeStreamData, ID: uint64(i)}); err != nil {
				t.Fatal(err)
			}
		}
		a.Close()
		for i := range n {
			f, err := b.ReadFrame()
			if err != nil || f.ID != uint64(i) {
				t.Fatalf("frame %d: got id %d, %v", i, f.ID, err)
			}
		}
		if _, err := b.ReadFrame(); !errors.Is(err, spear.ErrChannelClosed) {
			t.Fatalf("read after the peer's frames ran out: %v, want spear.ErrChannelClosed", err)
		}
		if err := b.WriteFrame(&wire.Frame{Type: wire.TypeHeartbeat}); !errors.Is(err, spear.ErrChannelClosed) {
			t.Fatalf("write to a closed peer: %v, want spear.ErrChannelClosed", err)
		}
		b.Close()
	}
}

func TestCloseUnblocks(t *testing.T) {
	t.Run("read on own close", func(t *testing.T) {
		a, b := memory.Pipe()
		defer b.Close()
		errc := make(chan error, 1)
		go func() { _, err := a.ReadFrame(); errc <- err }()
		a.Close()
		a.Close() // idempotent
		if err := <-errc; !errors.Is(err, spear.ErrChannelClosed) {
			t.Fatalf("got %v, want spear.ErrChannelClosed", err)
		}
		if err := a.WriteFrame(&wire.Frame{Type: wire.TypeHeartbeat}); !errors.Is(err, spear.ErrChannelClosed) {
			t.Fatalf("write after Close: %v", err)
		}
	})
	t.Run("write to a full queue on peer close", func(t *testing.T) {
		a, b := memory.Pipe()
		defer a.Close()
		errc := make(chan error, 1)
		go func() {
			for {
				if err := a.WriteFrame(&wire.Frame{Type: wire.TypeStreamData}); err != nil {
					errc <- err
					return
				}
			}
		}()
		// Let the writer fill the queue and block (it cannot fail before
		// the close below), then close the reading end.
		b.Close()
		select {
		case err := <-errc:
			if !errors.Is(err, spear.ErrChannelClosed) {
				t.Fatalf("got %v, want spear.ErrChannelClosed", err)
			}
		case <-testContext(t).Done():
			t.Fatal("a blocked write did not return when the peer closed")
		}
	})
}

func TestDialErrors(t *testing.T) {
	ctx := testContext(t)
	if _, err := memory.Dial(ctx, "memory:does-not-exist"); !errors.Is(err, spear.ErrConnectionFailed) {
		t.Errorf("dial unknown address: %v, want spear.ErrConnectionFailed", err)
	}

	l := memory.Listen()
	l.Close()
	if _, err := memory.Dial(ctx, l.Addr()); !errors.Is(err, spear.ErrConnectionFailed) {
		t.Errorf("dial a closed listener: %v, want spear.ErrConnectionFailed", err)
	}
	if _, err := l.Accept(); !errors.Is(err, spear.ErrChannelClosed) {
		t.Errorf("accept after Close: %v, want spear.ErrChannelClosed", err)
	}

	l2 := memory.Listen()
	defer l2.Close()
	short, cancel := context.WithCancel(ctx)
	cancel() // nobody accepts, so only the context can end the dial
	if _, err := memory.Dial(short, l2.Addr()); !errors.Is(err, spear.ErrConnectionFailed) || !errors.Is(err, context.Canceled) {
		t.Errorf("dial with a cancelled context: %v, want spear.ErrConnectionFailed and context.Canceled", err)
	}
}
