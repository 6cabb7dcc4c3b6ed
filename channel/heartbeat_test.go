package channel_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/wire"
)

var fastHeartbeats = channel.Config{HeartbeatInterval: 50 * time.Millisecond, HeartbeatMisses: 3}

// TestHeartbeatSilentPeer: an instance that authenticates and then says
// nothing more is disconnected by the heartbeat.
func TestHeartbeatSilentPeer(t *testing.T) {
	for _, typ := range channel.Types() {
		t.Run(string(typ), func(t *testing.T) {
			f := newFactory(t, channel.Options{})
			ch := newChannel(t, f, typ, fastHeartbeats)
			cr := ch.Credentials()
			if _, err := connectAs(t, cr, cr.ID, cr.Secret); err != nil {
				t.Fatal(err)
			}
			waitConnected(t, ch)
			waitDisconnected(t, ch)
			if ch.IsConnected() {
				t.Fatal("IsConnected after the heartbeat timeout")
			}
			if n := ch.Stats().Errors["heartbeat"]; n != 1 {
				t.Fatalf("heartbeat errors %d, want 1", n)
			}
		})
	}
}

// TestHeartbeatHungInstance: an instance that answers heartbeats until it
// receives a request, then stops reading and answering anything: the
// pending request fails with spear.ErrHeartbeatTimeout.
func TestHeartbeatHungInstance(t *testing.T) {
	for _, typ := range channel.Types() {
		t.Run(string(typ), func(t *testing.T) {
			f := newFactory(t, channel.Options{})
			ch := newChannel(t, f, typ, fastHeartbeats)
			cr := ch.Credentials()
			conn, err := connectAs(t, cr, cr.ID, cr.Secret)
			if err != nil {
				t.Fatal(err)
			}
			hung := make(chan error, 1)
			go func() {
				for {
					f, err := conn.ReadFrame()
					if err != nil {
						hung <- err
						return
					}
					switch f.Type {
					case wire.TypeHeartbeat:
						if err := conn.WriteFrame(&wire.Frame{Type: wire.TypeHeartbeat, Flags: wire.FlagAck, ID: f.ID}); err != nil {
							hung <- err
							return
						}
					case wire.TypeExecuteRequest:
						hung <- nil // and never read or write again
						return
					}
				}
			}()
			waitConnected(t, ch)
			disconnected := ch.Disconnected()

			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			_, reqErr := channel.Execute(ctx, ch, channel.Invocation{Payload: []byte("anyone?")})
			if err := <-hung; err != nil {
				t.Fatalf("the instance failed before the request reached it: %v", err)
			}
			if !errors.Is(reqErr, spear.ErrHeartbeatTimeout) {
				t.Fatalf("request error %v, want spear.ErrHeartbeatTimeout", reqErr)
			}
			if ctx.Err() != nil {
				t.Fatal("the request ended by its own deadline, not the heartbeat")
			}
			var ie *spear.InstanceError
			if !errors.As(reqErr, &ie) || ie.ID != ch.InstanceID() {
				t.Errorf("request error %v does not name the instance", reqErr)
			}
			select {
			case <-disconnected:
			case <-testCtx(t).Done():
				t.Fatal("Disconnected never closed")
			}
			if ch.IsConnected() {
				t.Fatal("IsConnected after the heartbeat timeout")
			}
		})
	}
}

// TestHeartbeatHealthyInstance: an idle SDK instance on the same short
// interval keeps its one connection across many intervals.
func TestHeartbeatHealthyInstance(t *testing.T) {
	for _, typ := range channel.Types() {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel() // they mostly wait
			f := newFactory(t, channel.Options{})
			ch := newChannel(t, f, typ, fastHeartbeats)
			startInProcess(t, ch, nil)
			waitConnected(t, ch)
			disconnected := ch.Disconnected()
			// Idle, only heartbeats flow: one each way per interval or so.
			// Wait for enough of them to span many intervals.
			const frames = 20
			eventually(t, func() bool { return ch.Stats().MessagesReceived >= frames || !ch.IsConnected() },
				func() string { return fmt.Sprintf("only %d frames in", ch.Stats().MessagesReceived) })
			select {
			case <-disconnected:
				t.Fatalf("a healthy instance was disconnected; stats %+v", ch.Stats())
			default:
			}
			st := ch.Stats()
			if st.Connects != 1 || st.Disconnects != 0 || st.Errors["heartbeat"] != 0 {
				t.Fatalf("connects %d, disconnects %d, heartbeat errors %d; want one lasting connection",
					st.Connects, st.Disconnects, st.Errors["heartbeat"])
			}
			if err := echo(testCtx(t), ch, "awake"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
