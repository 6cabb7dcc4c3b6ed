package channel_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/sdk"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// bfTimeout bounds every wait in these tests; none should come near it.
const bfTimeout = 30 * time.Second

// bfHeader builds a raw frame header with any version, type and length.
func bfHeader(length uint32, version, typ byte) []byte {
	return []byte{byte(length >> 24), byte(length >> 16), byte(length >> 8), byte(length), version, typ, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 1}
}

// bfCase is one kind of bad input a misbehaving instance sends.
type bfCase struct {
	name string
	data []byte
	// hangUp: after the bytes, close the write side (a truncated frame
	// is only truncated once the stream ends).
	hangUp bool
	// code is the ERROR code the agent must answer with before closing;
	// 0 means no particular code (the agent may say nothing).
	code spear.Code
}

var bfCases = []bfCase{
	{name: "oversized length", data: bfHeader(0xFFFFFFF0, wire.Version, byte(wire.TypeExecuteResponse)), code: spear.CodeTooLarge},
	// Byte 4 of an HTTP request line is not version 1.
	{name: "garbage", data: []byte("GET / HTTP/1.1\r\nHost: spear\r\n\r\n"), code: spear.CodeUnsupportedVersion},
	{name: "truncated", data: append(bfHeader(100, wire.Version, byte(wire.TypeMessage)), "only part of it"...), hangUp: true},
	{name: "unknown type", data: bfHeader(0, wire.Version, 99), code: spear.CodeInvalidMessage},
	{name: "wrong version", data: bfHeader(0, 2, byte(wire.TypeExecuteResponse)), code: spear.CodeUnsupportedVersion},
}

// TestBadFrames sends malformed input to a real factory over real sockets,
// from raw clients, before and after a successful handshake. Each time the
// offending connection must be closed with a typed error while a healthy
// instance on the same factory keeps answering.
func TestBadFrames(t *testing.T) {
	for _, typ := range []channel.Type{channel.Unix, channel.TCP} {
		t.Run(string(typ), func(t *testing.T) {
			f, err := channel.NewFactory(channel.Options{
				// No heartbeats: the raw clients do not answer them.
				Defaults: channel.Config{HeartbeatInterval: -1},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			healthy := bfHealthy(t, f, typ)
			for _, phase := range []string{"before auth", "after auth"} {
				for _, tc := range bfCases {
					t.Run(phase+"/"+tc.name, func(t *testing.T) {
						bfRun(t, f, typ, healthy, phase == "after auth", tc)
					})
				}
			}
			if s := healthy.Stats(); s.Errors["invalid"] != 0 || s.Errors["auth"] != 0 || s.Connects != 1 {
				t.Errorf("the healthy instance was disturbed: %+v", s)
			}
		})
	}
}

// bfRun runs one case against a fresh victim channel.
func bfRun(t *testing.T, f *channel.Factory, typ channel.Type, healthy *channel.Channel, afterAuth bool, tc bfCase) {
	ctx, cancel := context.WithTimeout(context.Background(), bfTimeout)
	defer cancel()
	if err := bfEcho(ctx, healthy); err != nil {
		t.Fatalf("healthy instance, before: %v", err)
	}
	victim, err := f.CreateChannel(ctx, spear.Process, &channel.Config{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	cr := victim.Credentials()

	raw, conn := bfDial(ctx, t, typ, cr.Address)
	defer conn.Close()

	// After the handshake, open a request on the victim's connection, so
	// there is something pending for the bad frame to fail.
	var pending chan error
	if afterAuth {
		if _, err := auth.Connect(ctx, conn, cr.ID, cr.Secret); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if err := victim.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
		pending = make(chan error, 1)
		go func() {
			_, err := channel.Execute(ctx, victim, channel.Invocation{Payload: []byte("never answered")})
			pending <- err
		}()
		if fr, err := conn.ReadFrame(); err != nil || fr.Type != wire.TypeExecuteRequest {
			t.Fatalf("waiting for the request: %v %v", fr.Type, err)
		}
	} else if fr, err := conn.ReadFrame(); err != nil || fr.Type != wire.TypeAuthChallenge {
		t.Fatalf("waiting for the challenge: %v %v", fr.Type, err)
	}

	during := bfHammer(ctx, healthy)
	defer during()
	if _, err := raw.Write(tc.data); err != nil {
		t.Fatalf("write: %v", err)
	}
	if tc.hangUp {
		if err := raw.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	if err := bfEcho(ctx, healthy); err != nil {
		t.Errorf("healthy instance, during: %v", err)
	}

	// The agent may explain, then must close.
	frames, err := bfReadUntilClosed(conn)
	if !errors.Is(err, spear.ErrChannelClosed) {
		t.Errorf("the offending connection was not closed: %v", err)
	}
	var codes []spear.Code
	for _, fr := range frames {
		if fr.Type != wire.TypeError {
			t.Errorf("unexpected %v frame before the close", fr.Type)
			continue
		}
		var e spearpb.Error
		if err := proto.Unmarshal(fr.Payload, &e); err != nil {
			t.Errorf("undecodable ERROR frame: %v", err)
		}
		codes = append(codes, spear.Code(e.Code))
		if !errors.Is(&spear.RemoteError{Code: spear.Code(e.Code)}, spear.ErrInvalidMessage) {
			t.Errorf("ERROR code %v does not say the frame was invalid", spear.Code(e.Code))
		}
	}
	if tc.code != 0 && (len(codes) != 1 || codes[0] != tc.code) {
		t.Errorf("agent answered with ERROR codes %v, want exactly [%v]", codes, tc.code)
	}

	// A typed error where one is observable.
	if afterAuth {
		select {
		case err := <-pending:
			if !errors.Is(err, spear.ErrInvalidMessage) {
				t.Errorf("the pending request failed with %v, want ErrInvalidMessage", err)
			}
			var ie *spear.InstanceError
			if !errors.As(err, &ie) || ie.ID != cr.ID {
				t.Errorf("the pending request's error %v does not name instance %s", err, cr.ID)
			}
		case <-ctx.Done():
			t.Fatal("the pending request never failed")
		}
		select {
		case <-victim.Disconnected():
		case <-ctx.Done():
			t.Fatal("the victim channel still has a connection")
		}
		if n := victim.Stats().Errors["invalid"]; n != 1 {
			t.Errorf("victim counted %d invalid-frame errors, want 1", n)
		}
	} else if typ == channel.Unix {
		// The unix socket is the victim's own, so the failed handshake is
		// counted against it. (A shared tcp listener cannot attribute it.)
		if n := victim.Stats().Errors["auth"]; n != 1 {
			t.Errorf("victim counted %d auth errors, want 1", n)
		}
	}
	if victim.IsConnected() {
		t.Error("victim reports a connection")
	}

	if err := bfEcho(ctx, healthy); err != nil {
		t.Errorf("healthy instance, after: %v", err)
	}
	if n, err := during(); err != nil || n == 0 {
		t.Errorf("healthy instance while the bad frame was handled: %d answers, error %v", n, err)
	}
}

// bfDial opens a raw socket to addr and a frame reader over it. Writes of
// bad bytes go to the raw socket; frames (and the handshake) go through
// the returned StreamConn, which owns the read buffer.
func bfDial(ctx context.Context, t *testing.T, typ channel.Type, addr string) (net.Conn, *transport.StreamConn) {
	t.Helper()
	var d net.Dialer
	raw, err := d.DialContext(ctx, string(typ), addr)
	if err != nil {
		t.Fatal(err)
	}
	// Bound every read: a bug must fail the test, not hang it.
	if err := raw.SetReadDeadline(time.Now().Add(bfTimeout)); err != nil {
		t.Fatal(err)
	}
	return raw, transport.NewStreamConn(raw, transport.Info{Transport: string(typ)}, 0, bfTimeout)
}

// bfReadUntilClosed reads frames until the connection fails.
func bfReadUntilClosed(conn transport.Conn) ([]wire.Frame, error) {
	var frames []wire.Frame
	for {
		f, err := conn.ReadFrame()
		if err != nil {
			return frames, err
		}
		frames = append(frames, f)
	}
}

// bfHealthy starts an in-process SDK instance on a channel of typ and
// waits until it is connected. It stops when the test ends.
func bfHealthy(t *testing.T, f *channel.Factory, typ channel.Type) *channel.Channel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bfTimeout)
	defer cancel()
	ch, err := f.CreateChannel(ctx, spear.Process, &channel.Config{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	cr := ch.Credentials()
	in, err := sdk.New(sdk.Options{
		ID: cr.ID, Secret: cr.Secret, Channel: string(cr.Type), Address: cr.Address,
		Handler: sdk.HandlerFunc(func(_ context.Context, r *sdk.Request) ([]byte, error) {
			return append([]byte("ok:"), r.Payload...), nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = in.Serve(sctx)
	}()
	t.Cleanup(func() {
		stop()
		wg.Wait()
	})
	if err := ch.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return ch
}

// bfEcho runs one request on ch and checks the answer.
func bfEcho(ctx context.Context, ch *channel.Channel) error {
	out, err := channel.Execute(ctx, ch, channel.Invocation{Payload: []byte("ping")})
	if err != nil {
		return err
	}
	if string(out) != "ok:ping" {
		return fmt.Errorf("answer %q, want %q", out, "ok:ping")
	}
	return nil
}

// bfHammer sends requests to ch back to back until the returned function
// is called, which stops it and reports how many were answered and the
// first failure. The function may be called more than once.
func bfHammer(ctx context.Context, ch *channel.Channel) func() (int, error) {
	stop := make(chan struct{})
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for {
			// At least one request, however soon it is stopped.
			if err := bfEcho(ctx, ch); err != nil {
				r.err = err
				break
			}
			r.n++
			select {
			case <-stop:
				done <- r
				return
			default:
			}
		}
		done <- r
	}()
	return sync.OnceValues(func() (int, error) {
		close(stop)
		r := <-done
		return r.n, r.err
	})
}
