package channel_test

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// TestAuthRejections attacks two connected instances, A and B, and a
// third, R, whose handshake is recorded and replayed. Every attempt must be
// refused, counted against the instance it targeted where that is known,
// and A and B must keep answering throughout.
func TestAuthRejections(t *testing.T) {
	for _, typ := range channel.Types() {
		t.Run(string(typ), func(t *testing.T) {
			testAuthRejections(t, typ)
		})
	}
}

func testAuthRejections(t *testing.T, typ channel.Type) {
	f := newFactory(t, channel.Options{Defaults: channel.Config{AuthTimeout: 200 * time.Millisecond}})
	a := newChannel(t, f, typ, channel.Config{})
	b := newChannel(t, f, typ, channel.Config{})
	r := newChannel(t, f, typ, channel.Config{})
	startInProcess(t, a, nil)
	startInProcess(t, b, nil)
	waitConnected(t, a)
	waitConnected(t, b)
	crA, crB, crR := a.Credentials(), b.Credentials(), r.Credentials()
	// Instances with a listener of their own (unix, memory) can be told
	// apart before a handshake; on a shared listener a failure is known
	// only for the instance the peer claimed to be.
	ownListener := typ == channel.Unix || typ == channel.Memory

	// A and B answer requests the whole time.
	stop := make(chan struct{})
	var served atomic.Int64
	var wg sync.WaitGroup
	bystanderErr := make(chan error, 2)
	for _, ch := range []*channel.Channel{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := echo(testCtx(t), ch, nonce()); err != nil {
					bystanderErr <- err
					return
				}
				served.Add(1)
			}
		}()
	}
	authErrs := map[*channel.Channel]uint64{}

	t.Run("A's secret with B's id", func(t *testing.T) {
		conn, err := connectAs(t, crB, crB.ID, crA.Secret)
		wantAuthFailed(t, conn, err)
		authErrs[b]++
	})
	t.Run("wrong secret", func(t *testing.T) {
		conn, err := connectAs(t, crA, crA.ID, auth.NewSecret())
		wantAuthFailed(t, conn, err)
		authErrs[a]++
	})
	t.Run("unknown instance", func(t *testing.T) {
		ghost := crA.ID
		ghost.Name = "ghost"
		conn, err := connectAs(t, crA, ghost, crA.Secret)
		wantAuthFailed(t, conn, err)
		if ownListener {
			authErrs[a]++
		}
	})
	t.Run("replayed handshake", func(t *testing.T) {
		rec := &recordingConn{Conn: dial(t, crR)}
		if _, err := auth.Connect(testCtx(t), rec, crR.ID, crR.Secret); err != nil {
			t.Fatalf("good handshake failed: %v", err)
		}
		waitConnected(t, r)
		req := rec.first(wire.TypeAuthRequest)
		if req == nil {
			t.Fatal("no AUTH_REQUEST recorded")
		}
		rec.Close()
		waitDisconnected(t, r)

		conn := dial(t, crR)
		if f, err := conn.ReadFrame(); err != nil || f.Type != wire.TypeAuthChallenge {
			t.Fatalf("got %v %v, want an AUTH_CHALLENGE", f.Type, err)
		}
		if err := conn.WriteFrame(req); err != nil {
			t.Fatal(err)
		}
		frames, _ := readUntilClosed(conn)
		if len(frames) != 1 || errorCode(frames[0]) != spear.CodeAuthFailed {
			t.Fatalf("replay answered with %v, want one AUTH_FAILED ERROR frame", frameTypes(frames))
		}
		if r.IsConnected() {
			t.Fatal("replayed handshake bound a connection")
		}
		authErrs[r]++
	})
	t.Run("silent peer", func(t *testing.T) {
		conn := dial(t, crA)
		// The agent speaks first; a peer that never answers is dropped
		// after the AuthTimeout, well inside the test's deadline.
		frames, err := readUntilClosed(conn)
		if !errors.Is(err, spear.ErrChannelClosed) {
			t.Fatalf("read ended with %v, want the agent to close the connection", err)
		}
		if len(frames) != 1 || frames[0].Type != wire.TypeAuthChallenge {
			t.Fatalf("got frames %v, want just the AUTH_CHALLENGE", frameTypes(frames))
		}
		if ownListener {
			authErrs[a]++
		}
	})
	if ownListener {
		t.Run("B's credentials on A's listener", func(t *testing.T) {
			conn, err := connectAs(t, crA, crB.ID, crB.Secret)
			wantAuthFailed(t, conn, err)
			authErrs[a]++
		})
	}

	// The attacks are over; the bystanders must have kept answering.
	before := served.Load()
	for _, ch := range []*channel.Channel{a, b} {
		if err := echo(testCtx(t), ch, "after"); err != nil {
			t.Errorf("instance %s after the attacks: %v", ch.InstanceID(), err)
		}
	}
	close(stop)
	wg.Wait()
	close(bystanderErr)
	for err := range bystanderErr {
		t.Errorf("bystander request failed: %v", err)
	}
	if before == 0 {
		t.Error("bystanders served no request during the attacks")
	}
	for _, ch := range []*channel.Channel{a, b, r} {
		want := authErrs[ch]
		eventually(t, func() bool { return ch.Stats().Errors["auth"] == want },
			func() string {
				return fmt.Sprintf("instance %s: %d auth errors counted, want %d", ch.InstanceID(), ch.Stats().Errors["auth"], want)
			})
	}
	for _, ch := range []*channel.Channel{a, b} {
		if st := ch.Stats(); st.Connects != 1 {
			t.Errorf("instance %s: %d connections bound, want only its own", ch.InstanceID(), st.Connects)
		}
	}
}

// wantAuthFailed checks that a handshake on conn failed with an error
// matching spear.ErrAuthFailed, and that the agent then closed conn.
func wantAuthFailed(t testing.TB, conn transport.Conn, err error) {
	t.Helper()
	if !errors.Is(err, spear.ErrAuthFailed) {
		t.Fatalf("handshake error %v, want one matching spear.ErrAuthFailed", err)
	}
	if frames, err := readUntilClosed(conn); !errors.Is(err, spear.ErrChannelClosed) || len(frames) != 0 {
		t.Fatalf("after the refusal got frames %v and %v, want the connection closed", frameTypes(frames), err)
	}
}

// TestCheckPeer: a channel's peer check sees what the transport knows of
// the peer and refuses it as an authentication failure, before the
// handshake on the instance's own socket and after it on a shared one.
func TestCheckPeer(t *testing.T) {
	for _, typ := range []channel.Type{channel.Unix, channel.TCP} {
		t.Run(string(typ), func(t *testing.T) {
			f := newFactory(t, channel.Options{})
			var allow atomic.Bool
			seen := make(chan transport.Info, 10)
			ch := newChannel(t, f, typ, channel.Config{CheckPeer: func(info transport.Info) error {
				seen <- info
				if !allow.Load() {
					return errors.New("not this one")
				}
				return nil
			}})
			_, done := startInProcess(t, ch, nil)
			select {
			case err := <-done:
				if !errors.Is(err, spear.ErrAuthFailed) {
					t.Fatalf("refused peer: Serve returned %v, want spear.ErrAuthFailed", err)
				}
			case <-testCtx(t).Done():
				t.Fatal("the refused peer was not refused")
			}
			if ch.IsConnected() {
				t.Fatal("a refused connection was bound")
			}
			// On a shared listener the refusal reaches the instance
			// before the agent counts it.
			eventually(t, func() bool { return ch.Stats().Errors["auth"] == 1 },
				func() string { return fmt.Sprintf("auth errors %d, want 1", ch.Stats().Errors["auth"]) })
			info := <-seen
			wantPID := -1 // tcp cannot tell
			if typ == channel.Unix {
				wantPID = os.Getpid() // SO_PEERCRED
			}
			if info.Transport != string(typ) || info.PeerPID != wantPID {
				t.Errorf("the check saw %+v, want transport %s and peer pid %d", info, typ, wantPID)
			}

			allow.Store(true)
			startInProcess(t, ch, nil)
			waitConnected(t, ch)
			if err := echo(testCtx(t), ch, "allowed"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSilentPeerHoldsNoSlot checks a peer that never speaks is dropped
// by the factory-wide AuthTimeout, and does not hold a connection slot.
func TestSilentPeerHoldsNoSlot(t *testing.T) {
	f := newFactory(t, channel.Options{MaxConnections: 1, Defaults: channel.Config{AuthTimeout: 200 * time.Millisecond}})
	ch := newChannel(t, f, channel.TCP, channel.Config{})
	for range 3 {
		conn := dial(t, ch.Credentials())
		if _, err := readUntilClosed(conn); !errors.Is(err, spear.ErrChannelClosed) {
			t.Fatalf("silent peer: read ended with %v, want closed", err)
		}
	}
	// The only slot is free again (after the agent's bookkeeping, which
	// finishes just after it closes the connection).
	eventually(t, func() bool {
		conn, err := connectAs(t, ch.Credentials(), ch.InstanceID(), ch.Credentials().Secret)
		if err != nil {
			return false
		}
		defer conn.Close()
		return true
	}, func() string { return "the connection slot never came back" })
}

// recordingConn records the frames written through it.
type recordingConn struct {
	transport.Conn
	mu      sync.Mutex
	written []wire.Frame
}

func (c *recordingConn) WriteFrame(f *wire.Frame) error {
	g := *f
	g.Payload = append([]byte(nil), f.Payload...)
	c.mu.Lock()
	c.written = append(c.written, g)
	c.mu.Unlock()
	return c.Conn.WriteFrame(f)
}

// first returns a copy of the first frame of type typ written, or nil.
func (c *recordingConn) first(typ wire.Type) *wire.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.written {
		if f.Type == typ {
			return &f
		}
	}
	return nil
}

// errorCode returns the code of an ERROR frame, or CodeUnknown.
func errorCode(f wire.Frame) spear.Code {
	var e spearpb.Error
	if f.Type != wire.TypeError || proto.Unmarshal(f.Payload, &e) != nil {
		return spear.CodeUnknown
	}
	return spear.Code(e.Code)
}

func frameTypes(frames []wire.Frame) []string {
	var s []string
	for _, f := range frames {
		s = append(s, f.Type.String())
	}
	return s
}

// waitDisconnected waits until ch has no instance connection.
func waitDisconnected(t testing.TB, ch *channel.Channel) {
	t.Helper()
	select {
	case <-ch.Disconnected():
	case <-testCtx(t).Done():
		t.Fatalf("instance %s never disconnected", ch.InstanceID())
	}
}

// eventually polls cond until it holds, failing the test with msg() if it
// does not within testTimeout. It is for state the agent settles just
// after the event a test can wait for.
func eventually(t testing.TB, cond func() bool, msg func() string) {
	t.Helper()
	ctx := testCtx(t)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal(msg())
		}
	}
}
