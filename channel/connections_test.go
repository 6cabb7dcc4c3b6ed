package channel_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/sdk"
)

// waitConnections waits until ch has n connections bound.
func waitConnections(t *testing.T, ch *channel.Channel, n int) {
	t.Helper()
	ctx := testCtx(t)
	for ch.Connections() != n {
		select {
		case <-ctx.Done():
			t.Fatalf("%d connections bound, want %d", ch.Connections(), n)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// An instance asked for three connections opens three, every one serves
// requests, and each counts against the instance's cap.
func TestSeveralConnections(t *testing.T) {
	for _, typ := range []channel.Type{channel.Unix, channel.TCP, channel.GRPC, channel.Memory} {
		t.Run(string(typ), func(t *testing.T) {
			f := newFactory(t, channel.Options{SocketDir: t.TempDir()})
			ch := newChannel(t, f, typ, channel.Config{Connections: 3, MaxConnections: 4})
			startInProcess(t, ch, nil)
			waitConnections(t, ch, 3)
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for i := range 64 {
				wg.Go(func() { errs <- echo(testCtx(t), ch, fmt.Sprint(i)) })
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if got := ch.Stats().Connects; got != 3 {
				t.Fatalf("%d connects, want 3", got)
			}
		})
	}
}

// An instance that predates several connections (no connection index,
// no max_connections) is asked for one, and keeps working with one.
func TestOldInstanceKeepsOneConnection(t *testing.T) {
	f := newFactory(t, channel.Options{SocketDir: t.TempDir()})
	ch := newChannel(t, f, channel.Unix, channel.Config{Connections: 3})
	startInProcess(t, ch, func(o *sdk.Options) { o.MaxConnections = 1 })
	waitConnected(t, ch)
	if err := echo(testCtx(t), ch, "x"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // room for connections that must not come
	if n := ch.Connections(); n != 1 {
		t.Fatalf("%d connections from an instance that holds one", n)
	}
	// The raw handshake of an old instance: the AUTH_RESPONSE asks for one.
	cr := ch.Credentials()
	conn := dial(t, cr)
	defer conn.Close()
	resp, err := auth.Connect(testCtx(t), conn, cr.ID, cr.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Connections != 1 {
		t.Fatalf("an old instance was asked for %d connections", resp.Connections)
	}
}

// A connection index past the instance's cap is refused.
func TestConnectionIndexPastCap(t *testing.T) {
	f := newFactory(t, channel.Options{SocketDir: t.TempDir()})
	ch := newChannel(t, f, channel.TCP, channel.Config{MaxConnections: 2})
	cr := ch.Credentials()
	conn := dial(t, cr)
	defer conn.Close()
	_, err := auth.ConnectSlot(testCtx(t), conn, cr.ID, cr.Secret, auth.Slot{Connection: 2, MaxConnections: 8})
	if re, ok := errors.AsType[*spear.RemoteError](err); !ok || re.Code != spear.CodeResourceExhausted {
		t.Fatalf("connection 2 of a cap of 2: err = %v, want RESOURCE_EXHAUSTED", err)
	}
}

// SetConnections grows and shrinks an instance's connections at run time
// (connections: auto), and requests keep flowing.
func TestSetConnections(t *testing.T) {
	f := newFactory(t, channel.Options{SocketDir: t.TempDir()})
	ch := newChannel(t, f, channel.Unix, channel.Config{MaxConnections: 4})
	startInProcess(t, ch, nil)
	waitConnections(t, ch, 1)
	if n, err := ch.SetConnections(testCtx(t), 3); err != nil || n != 3 {
		t.Fatalf("SetConnections(3) = %d, %v", n, err)
	}
	waitConnections(t, ch, 3)
	if n, err := ch.SetConnections(testCtx(t), 9); err != nil || n != 4 {
		t.Fatalf("SetConnections(9) = %d, %v; want the cap, 4", n, err)
	}
	waitConnections(t, ch, 4)
	if n, err := ch.SetConnections(testCtx(t), 1); err != nil || n != 1 {
		t.Fatalf("SetConnections(1) = %d, %v", n, err)
	}
	waitConnections(t, ch, 1)
	for i := range 10 {
		if err := echo(testCtx(t), ch, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// Without a connection, a request fails as not sent: safe to send again.
func TestRequestWithoutConnectionIsNotSent(t *testing.T) {
	f := newFactory(t, channel.Options{SocketDir: t.TempDir()})
	ch := newChannel(t, f, channel.Unix, channel.Config{})
	err := echo(testCtx(t), ch, "x")
	if !errors.Is(err, spear.ErrNotSent) || !errors.Is(err, spear.ErrNotConnected) {
		t.Fatalf("err = %v, want ErrNotSent and ErrNotConnected", err)
	}
	ch.Close()
	if err := echo(testCtx(t), ch, "x"); !errors.Is(err, spear.ErrNotSent) || !errors.Is(err, spear.ErrChannelClosed) {
		t.Fatalf("after Close: err = %v, want ErrNotSent and ErrChannelClosed", err)
	}
}

// Lost fails the requests pending on an instance as a lost connection,
// the same category the agent sees when the broken connection is noticed
// first; Close keeps its own category.
func TestLostIsConnectionFailed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		close func(*channel.Channel)
		want  error
		not   error
	}{
		{"lost", func(ch *channel.Channel) { ch.Lost("the instance's process exited") }, spear.ErrConnectionFailed, nil},
		{"closed", func(ch *channel.Channel) { ch.Close() }, spear.ErrChannelClosed, spear.ErrConnectionFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFactory(t, channel.Options{SocketDir: t.TempDir()})
			ch := newChannel(t, f, channel.Unix, channel.Config{})
			startInProcess(t, ch, nil)
			waitConnected(t, ch)
			failed := make(chan error, 1)
			go func() {
				_, err := channel.Execute(testCtx(t), ch, channel.Invocation{Method: "sleep", Payload: []byte("10s")})
				failed <- err
			}()
			if m, err := ch.Receive(testCtx(t)); err != nil || string(m.Payload) != "sleeping|10s" {
				t.Fatalf("the handler did not start: %q, %v", m.Payload, err)
			}
			tc.close(ch)
			err := <-failed
			var ie *spear.InstanceError
			if !errors.Is(err, tc.want) || !errors.As(err, &ie) || ie.ID != ch.InstanceID() || errors.Is(err, spear.ErrNotSent) {
				t.Fatalf("pending request: err = %v, want %v naming the instance, not ErrNotSent", err, tc.want)
			}
			if tc.not != nil && errors.Is(err, tc.not) {
				t.Fatalf("pending request: err = %v matches %v", err, tc.not)
			}
		})
	}
}

// Heartbeat reports the silent intervals of an instance that answers no
// probe, and the round trip of one that answers: the figure its
// statistics report too (one measurement, for outlier ejection and the
// metrics alike).
func TestHeartbeatFigures(t *testing.T) {
	f := newFactory(t, channel.Options{SocketDir: t.TempDir()})
	// Many misses allowed, so the silent instance stays connected.
	cfg := channel.Config{HeartbeatInterval: 20 * time.Millisecond, HeartbeatMisses: 1000}

	silent := newChannel(t, f, channel.Unix, cfg)
	conn, err := connectAs(t, silent.Credentials(), silent.InstanceID(), silent.Credentials().Secret)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close() // authenticated, then never reads again
	waitConnected(t, silent)

	alive := newChannel(t, f, channel.Unix, cfg)
	startInProcess(t, alive, nil)
	waitConnected(t, alive)

	ctx := testCtx(t)
	for silent.Heartbeat().Misses < 2 || alive.Heartbeat().RTT == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("silent %+v, alive %+v: want 2+ misses and a round trip", silent.Heartbeat(), alive.Heartbeat())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if hb, st := alive.Heartbeat().RTT, alive.Stats().HeartbeatRTT; hb != st {
		t.Errorf("Heartbeat().RTT %s, Stats().HeartbeatRTT %s: want the one measurement", hb, st)
	}
	if silent.Heartbeat().RTT != 0 || silent.Stats().HeartbeatRTT != 0 {
		t.Errorf("a round trip for an instance that answers no probe: %+v", silent.Heartbeat())
	}
}
