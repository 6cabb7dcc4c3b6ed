package channel_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/wire"
)

// TestCrashFailsPendingRequest kills an instance's process while a request
// to it is running: the request fails at once with the instance named,
// and the other instance is untouched.
func TestCrashFailsPendingRequest(t *testing.T) {
	for _, typ := range []channel.Type{channel.Unix, channel.TCP, channel.GRPC} {
		t.Run(string(typ), func(t *testing.T) {
			f := newFactory(t, channel.Options{})
			victim := newChannel(t, f, typ, channel.Config{})
			bystander := newChannel(t, f, typ, channel.Config{})
			proc := startChild(t, victim)
			startChild(t, bystander)
			waitConnected(t, victim)
			waitConnected(t, bystander)

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			result := make(chan error, 1)
			go func() {
				_, err := channel.Execute(ctx, victim, channel.Invocation{Method: "sleep", Payload: []byte("30s")})
				result <- err
			}()
			// The handler says when it has started: the request is then
			// surely pending in the agent.
			m, err := victim.Receive(testCtx(t))
			if err != nil || string(m.Payload) != "sleeping|30s" {
				t.Fatalf("got message %q %v, want the handler's start notice", m.Payload, err)
			}
			killed := time.Now()
			proc.kill()

			var reqErr error
			select {
			case reqErr = <-result:
			case <-testCtx(t).Done():
				t.Fatal("the request to the killed instance never failed")
			}
			// A correctness bound, far from the request's deadline: the
			// failure comes from the connection, not the timeout.
			if took := time.Since(killed); took > 15*time.Second {
				t.Errorf("request failed %s after the kill; it waited for its deadline", took)
			}
			for _, want := range []error{spear.ErrPeerGone, spear.ErrConnectionFailed} {
				if !errors.Is(reqErr, want) {
					t.Errorf("request error %v does not match %v", reqErr, want)
				}
			}
			if errors.Is(reqErr, spear.ErrTimeout) {
				t.Errorf("request error %v matches spear.ErrTimeout", reqErr)
			}
			var ie *spear.InstanceError
			if !errors.As(reqErr, &ie) || ie.ID != victim.InstanceID() {
				t.Errorf("request error %v does not name instance %s", reqErr, victim.InstanceID())
			}

			waitDisconnected(t, victim)
			if victim.IsConnected() {
				t.Error("the killed instance's channel still reports a connection")
			}
			_, err = channel.Execute(testCtx(t), victim, channel.Invocation{Payload: []byte("x")})
			if !errors.Is(err, spear.ErrNotConnected) {
				t.Errorf("request after the crash: %v, want spear.ErrNotConnected", err)
			}
			if err := echo(testCtx(t), bystander, "still here"); err != nil {
				t.Errorf("bystander after the crash: %v", err)
			}

			// Reaped, and killed by our signal rather than exiting on its own.
			select {
			case <-proc.done:
			case <-testCtx(t).Done():
				t.Fatal("the killed child was not reaped")
			}
			var exit *exec.ExitError
			if !errors.As(proc.err, &exit) {
				t.Fatalf("child ended with %v, want killed", proc.err)
			}
			if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("child ended with %v, want killed by SIGKILL", proc.err)
			}
		})
	}
}

// TestDuplicateConnection: the same instance connects twice. The newer
// connection wins, a request pending on the older fails with
// spear.ErrReplaced, and requests then go to the newer.
func TestDuplicateConnection(t *testing.T) {
	for _, typ := range channel.Types() {
		t.Run(string(typ), func(t *testing.T) {
			f := newFactory(t, channel.Options{})
			ch := newChannel(t, f, typ, channel.Config{})
			cr := ch.Credentials()
			older := startRaw(t, cr, "older")
			waitConnected(t, ch)
			disconnected := ch.Disconnected()

			pending := make(chan error, 1)
			go func() {
				_, err := channel.Execute(testCtx(t), ch, channel.Invocation{Payload: []byte("held")})
				pending <- err
			}()
			<-older.started // the request is held by the older connection

			newer := startRaw(t, cr, "newer")
			close(newer.release)
			var err error
			select {
			case err = <-pending:
			case <-testCtx(t).Done():
				t.Fatal("the request on the replaced connection never failed")
			}
			if !errors.Is(err, spear.ErrReplaced) || !errors.Is(err, spear.ErrConnectionFailed) {
				t.Fatalf("request on the replaced connection: %v, want spear.ErrReplaced", err)
			}
			var ie *spear.InstanceError
			if !errors.As(err, &ie) || ie.ID != ch.InstanceID() {
				t.Errorf("error %v does not name the instance", err)
			}
			select {
			case <-older.sess.Done(): // told to go away, and gone
			case <-testCtx(t).Done():
				t.Fatal("the older connection was not closed")
			}

			for range 3 {
				out, err := channel.Execute(testCtx(t), ch, channel.Invocation{Payload: []byte("x")})
				if err != nil || string(out) != "raw|newer" {
					t.Fatalf("after the replacement got %q %v, want the newer connection's answer", out, err)
				}
			}
			select {
			case <-disconnected:
				t.Fatal("Disconnected closed, though the instance stayed connected throughout")
			default:
			}
			if st := ch.Stats(); st.Connects != 2 || !ch.IsConnected() {
				t.Fatalf("connects %d, connected %v; want 2 and true", st.Connects, ch.IsConnected())
			}
		})
	}
}

// TestClose: Close fails pending calls at once, is idempotent and safe
// from many goroutines, and everything after it fails with
// spear.ErrChannelClosed.
func TestClose(t *testing.T) {
	for _, typ := range channel.Types() {
		t.Run(string(typ), func(t *testing.T) {
			f := newFactory(t, channel.Options{})
			ch := newChannel(t, f, typ, channel.Config{})
			other := newChannel(t, f, typ, channel.Config{})
			startInProcess(t, ch, nil)
			startInProcess(t, other, nil)
			waitConnected(t, ch)
			waitConnected(t, other)

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			pending := make(chan error, 1)
			go func() {
				_, err := channel.Execute(ctx, ch, channel.Invocation{Method: "sleep", Payload: []byte("30s")})
				pending <- err
			}()
			if m, err := ch.Receive(testCtx(t)); err != nil || string(m.Payload) != "sleeping|30s" {
				t.Fatalf("got %q %v, want the handler's start notice", m.Payload, err)
			}
			// A one-way message left unread: Receive after Close must not
			// return it.
			if out, err := channel.Execute(testCtx(t), ch, channel.Invocation{Method: "send", Payload: []byte("unread")}); err != nil || string(out) != "sent" {
				t.Fatalf("send: %q %v", out, err)
			}

			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := ch.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
				}()
			}
			wg.Wait()
			select {
			case err := <-pending:
				if !errors.Is(err, spear.ErrChannelClosed) {
					t.Errorf("pending request: %v, want spear.ErrChannelClosed", err)
				}
			case <-testCtx(t).Done():
				t.Fatal("the pending request did not fail at Close")
			}
			if ctx.Err() != nil {
				t.Fatal("the pending request waited for its deadline")
			}

			msg := channel.Message{Type: wire.TypeMessage, Payload: []byte("late")}
			_, reqErr := ch.Request(testCtx(t), msg)
			_, recvErr := ch.Receive(testCtx(t))
			_, streamErr := ch.Stream(testCtx(t), msg)
			for name, err := range map[string]error{
				"Send":          ch.Send(testCtx(t), msg),
				"Request":       reqErr,
				"Receive":       recvErr,
				"Stream":        streamErr,
				"WaitConnected": ch.WaitConnected(testCtx(t)),
			} {
				if !errors.Is(err, spear.ErrChannelClosed) {
					t.Errorf("%s after Close: %v, want spear.ErrChannelClosed", name, err)
				}
				var ie *spear.InstanceError
				if !errors.As(err, &ie) || ie.ID != ch.InstanceID() {
					t.Errorf("%s after Close: %v does not name the instance", name, err)
				}
			}
			if ch.IsConnected() {
				t.Error("IsConnected after Close")
			}
			select {
			case <-ch.Disconnected():
			default:
				t.Error("Disconnected not closed after Close")
			}
			if _, ok := f.Get(ch.InstanceID()); ok {
				t.Error("the factory still has the closed channel")
			}
			if err := ch.Close(); err != nil {
				t.Errorf("Close again: %v", err)
			}
			if err := echo(testCtx(t), other, "unaffected"); err != nil {
				t.Errorf("another instance after Close: %v", err)
			}
		})
	}
}

// TestImmediateHangUp: instances that hang up right after their handshake,
// while the agent is still binding the connection, leave the channel
// disconnected (not holding a dead connection), and a real instance can
// connect after them.
func TestImmediateHangUp(t *testing.T) {
	for _, typ := range channel.Types() {
		t.Run(string(typ), func(t *testing.T) {
			f := newFactory(t, channel.Options{})
			ch := newChannel(t, f, typ, channel.Config{MaxConnections: 64})
			cr := ch.Credentials()
			for range 50 {
				conn, err := connectAs(t, cr, cr.ID, cr.Secret)
				if err != nil {
					t.Fatal(err)
				}
				conn.Close()
			}
			// Every session was bound (a bound connection may replace the
			// one before it), and the last one ends just after its
			// handshake; the channel notices soon after. Only then may the
			// real instance connect, or a late hang-up would replace it.
			eventually(t, func() bool { return ch.Stats().Connects == 50 && !ch.IsConnected() },
				func() string {
					return fmt.Sprintf("%d of 50 hang-ups bound, connected %v", ch.Stats().Connects, ch.IsConnected())
				})
			startInProcess(t, ch, nil)
			waitConnected(t, ch)
			// Under load the instance's first connection can still lose a
			// race with the agent tearing down a hung-up one; a request
			// that was never sent (what the pool retries) may be retried,
			// anything else fails the test.
			var err error
			eventually(t, func() bool {
				err = echo(testCtx(t), ch, "after the hang-ups")
				if err != nil && !errors.Is(err, spear.ErrNotSent) {
					t.Fatal(err)
				}
				return err == nil
			}, func() string { return fmt.Sprintf("no answer after the hang-ups: %v", err) })
		})
	}
}
