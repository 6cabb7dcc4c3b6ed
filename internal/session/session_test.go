package session_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/session"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/stats"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/transport/memory"
	"github.com/spear-go/spear/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The transports sessions are tested over: frames as Go values, and frames
// encoded onto a byte stream.
var kinds = []string{"memory", "stream"}

func conns(t *testing.T, kind string) (transport.Conn, transport.Conn) {
	t.Helper()
	switch kind {
	case "memory":
		a, b := memory.Pipe()
		return a, b
	case "stream":
		a, b := net.Pipe()
		info := transport.Info{Transport: "pipe", PeerPID: -1, PeerUID: -1}
		return transport.NewStreamConn(a, info, 0, 0), transport.NewStreamConn(b, info, 0, 0)
	}
	t.Fatalf("unknown kind %q", kind)
	return nil, nil
}

func forEachKind(t *testing.T, f func(t *testing.T, kind string)) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) { f(t, kind) })
	}
}

// start runs a session on c that the test closes, and whose handlers it
// waits for, when it ends.
func start(t *testing.T, c transport.Conn, cfg session.Config) *session.Session {
	s := session.Start(c, cfg)
	t.Cleanup(func() {
		s.Close(nil)
		s.Wait()
	})
	return s
}

// pair returns an agent session and an instance session talking to each
// other.
func pair(t *testing.T, kind string, agent, instance session.Config) (*session.Session, *session.Session) {
	agent.Agent = true
	instance.Agent = false
	a, b := conns(t, kind)
	return start(t, a, agent), start(t, b, instance)
}

// raw returns a session of the given role and the bare connection to it,
// through which a test plays a peer frame by frame.
func raw(t *testing.T, kind string, cfg session.Config) (*session.Session, transport.Conn) {
	a, b := conns(t, kind)
	t.Cleanup(func() { a.Close() })
	return start(t, b, cfg), a
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func request(payload string) *wire.Frame {
	return &wire.Frame{Type: wire.TypeExecuteRequest, Payload: []byte(payload)}
}

func reply(r *session.Responder, payload string) {
	_ = r.Send(&wire.Frame{Type: wire.TypeExecuteResponse, Payload: []byte(payload)})
}

// echo answers every request with its own payload.
var echo = session.HandlerFunc(func(_ context.Context, req wire.Frame, r *session.Responder) {
	_ = r.Send(&wire.Frame{Type: wire.TypeExecuteResponse, Payload: req.Payload})
})

// recv waits for a value from ch, failing the test at ctx's end.
func recv[T any](t *testing.T, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func TestConcurrentRequestsAnsweredOutOfOrder(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		const n = 40
		release := make([]chan struct{}, n)
		for i := range release {
			release[i] = make(chan struct{})
		}
		arrived := make(chan int, n)
		h := session.HandlerFunc(func(ctx context.Context, req wire.Frame, r *session.Responder) {
			i, _ := strconv.Atoi(string(req.Payload))
			arrived <- i
			select {
			case <-release[i]:
				reply(r, "re:"+string(req.Payload))
			case <-ctx.Done():
			}
		})
		agent, _ := pair(t, kind, session.Config{}, session.Config{Handler: h})
		ctx := testContext(t)
		answered := make(chan int, n)
		errs := make(chan error, n)
		for i := range n {
			go func() {
				f, err := agent.Request(ctx, request(strconv.Itoa(i)), 0)
				switch {
				case err != nil:
					errs <- err
				case string(f.Payload) != "re:"+strconv.Itoa(i):
					errs <- fmt.Errorf("request %d got the answer %q", i, f.Payload)
				default:
					answered <- i
				}
			}()
		}
		for range n {
			recv(t, ctx, arrived, "every request to reach its handler")
		}
		// Answer in reverse order, one at a time: each answer must reach
		// exactly its own caller.
		for i := n - 1; i >= 0; i-- {
			close(release[i])
			select {
			case got := <-answered:
				if got != i {
					t.Fatalf("released %d, but request %d was answered", i, got)
				}
			case err := <-errs:
				t.Fatal(err)
			case <-ctx.Done():
				t.Fatalf("request %d was not answered", i)
			}
		}
	})
}

func TestSlowRequestDoesNotHoldUpFastOne(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		slowStarted, fastDone := make(chan struct{}), make(chan struct{})
		h := session.HandlerFunc(func(ctx context.Context, req wire.Frame, r *session.Responder) {
			if string(req.Payload) != "slow" {
				reply(r, "fast")
				return
			}
			close(slowStarted)
			select { // finishes only once the fast answer has arrived
			case <-fastDone:
				reply(r, "slow")
			case <-ctx.Done():
			}
		})
		agent, _ := pair(t, kind, session.Config{}, session.Config{Handler: h})
		ctx := testContext(t)
		slow := make(chan error, 1)
		go func() {
			f, err := agent.Request(ctx, request("slow"), 0)
			if err == nil && string(f.Payload) != "slow" {
				err = fmt.Errorf("slow request answered %q", f.Payload)
			}
			slow <- err
		}()
		recv(t, ctx, slowStarted, "the slow handler to start")
		f, err := agent.Request(ctx, request("fast"), 0)
		if err != nil || string(f.Payload) != "fast" {
			t.Fatalf("fast request while a slow one runs: %q, %v", f.Payload, err)
		}
		close(fastDone)
		if err := recv(t, ctx, slow, "the slow answer"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDeadlineCancelsPeerHandler(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		handlerErr := make(chan error, 1)
		h := session.HandlerFunc(func(ctx context.Context, req wire.Frame, r *session.Responder) {
			if string(req.Payload) != "block" {
				echo(ctx, req, r)
				return
			}
			<-ctx.Done()
			handlerErr <- ctx.Err()
		})
		agent, _ := pair(t, kind, session.Config{}, session.Config{Handler: h})
		ctx := testContext(t)
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := agent.Request(short, request("block"), 0)
		if !errors.Is(err, spear.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("request past its deadline: %v, want spear.ErrTimeout", err)
		}
		// The CANCEL frame reached the peer and ended the handler's context.
		if err := recv(t, ctx, handlerErr, "the peer handler's context to end"); !errors.Is(err, context.Canceled) {
			t.Fatalf("handler context ended with %v, want context.Canceled", err)
		}
		if f, err := agent.Request(ctx, request("still works"), 0); err != nil || string(f.Payload) != "still works" {
			t.Fatalf("request after a timed-out one: %q, %v", f.Payload, err)
		}
		if n := agent.Stats().Snapshot().Errors["timeout"]; n != 1 {
			t.Errorf("timeout errors counted: %d, want 1", n)
		}
	})
}

func TestCallerCancellation(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		started, handlerErr := make(chan struct{}, 2), make(chan error, 2)
		h := session.HandlerFunc(func(ctx context.Context, _ wire.Frame, r *session.Responder) {
			started <- struct{}{}
			<-ctx.Done()
			handlerErr <- ctx.Err()
		})
		agent, _ := pair(t, kind, session.Config{}, session.Config{Handler: h})
		ctx := testContext(t)

		rctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { _, err := agent.Request(rctx, request("x"), 0); errc <- err }()
		recv(t, ctx, started, "the handler to start")
		cancel()
		if err := recv(t, ctx, errc, "the cancelled request"); !errors.Is(err, context.Canceled) || errors.Is(err, spear.ErrTimeout) {
			t.Fatalf("cancelled request: %v, want context.Canceled and not a timeout", err)
		}
		if err := recv(t, ctx, handlerErr, "the handler to be cancelled"); !errors.Is(err, context.Canceled) {
			t.Fatalf("handler context: %v", err)
		}

		// Closing a stream before its end cancels its handler too.
		st, err := agent.OpenStream(ctx, request("stream"))
		if err != nil {
			t.Fatal(err)
		}
		recv(t, ctx, started, "the stream handler to start")
		st.Close()
		if err := recv(t, ctx, handlerErr, "the stream handler to be cancelled"); !errors.Is(err, context.Canceled) {
			t.Fatalf("stream handler context: %v", err)
		}
		if n := agent.Stats().Snapshot().Errors["canceled"]; n != 1 {
			t.Errorf("canceled errors counted: %d, want 1", n)
		}
	})
}

func TestStreams(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		h := session.HandlerFunc(func(ctx context.Context, req wire.Frame, r *session.Responder) {
			if req.Flags&wire.FlagStream == 0 {
				r.Error(spear.CodeInvalidMessage, "not a stream request")
				return
			}
			data := func(flags wire.Flags, p string) {
				_ = r.Send(&wire.Frame{Type: wire.TypeStreamData, Flags: flags, Payload: []byte(p)})
			}
			switch string(req.Payload) {
			case "count":
				for i := range 20 {
					data(0, strconv.Itoa(i))
				}
				data(wire.FlagEnd, "")
			case "last":
				data(0, "a")
				data(wire.FlagEnd, "z")
			case "fail":
				data(0, "a")
				r.Error(spear.CodeInternal, "boom")
			}
		})
		agent, _ := pair(t, kind, session.Config{}, session.Config{Handler: h})
		ctx := testContext(t)
		read := func(payload string) ([]string, error) {
			st, err := agent.OpenStream(ctx, request(payload))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var got []string
			for {
				b, err := st.Recv()
				if err != nil {
					if _, again := st.Recv(); again != io.EOF {
						t.Errorf("Recv after the end: %v, want io.EOF", again)
					}
					return got, err
				}
				got = append(got, string(b))
			}
		}

		got, err := read("count")
		want := make([]string, 20)
		for i := range want {
			want[i] = strconv.Itoa(i)
		}
		if err != io.EOF || strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("count: %v then %v, want 0..19 in order then io.EOF", got, err)
		}

		got, err = read("last")
		if err != io.EOF || strings.Join(got, ",") != "a,z" {
			t.Errorf("last: %v then %v, want [a z] then io.EOF", got, err)
		}

		got, err = read("fail")
		var re *spear.RemoteError
		if !errors.As(err, &re) || re.Code != spear.CodeInternal || re.Message != "boom" || strings.Join(got, ",") != "a" {
			t.Errorf("fail: %v then %v, want [a] then a remote internal error", got, err)
		}
		if n := agent.Stats().Snapshot().Errors["remote"]; n != 1 {
			t.Errorf("remote errors counted: %d, want 1", n)
		}
	})
}

func TestStreamOverflowAffectsOnlyThatStream(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		const buffer, sent = 4, 30
		cancelled := make(chan struct{})
		h := session.HandlerFunc(func(ctx context.Context, req wire.Frame, r *session.Responder) {
			if string(req.Payload) != "flood" {
				echo(ctx, req, r)
				return
			}
			for i := range sent {
				if r.Send(&wire.Frame{Type: wire.TypeStreamData, Payload: []byte(strconv.Itoa(i))}) != nil {
					return
				}
			}
			<-ctx.Done() // the overflowing side sends CANCEL
			close(cancelled)
		})
		agent, _ := pair(t, kind, session.Config{StreamBuffer: buffer}, session.Config{Handler: h})
		ctx := testContext(t)
		st, err := agent.OpenStream(ctx, request("flood"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		// Nobody reads the stream until the peer was told to stop.
		recv(t, ctx, cancelled, "the flooding handler to be cancelled")
		if f, err := agent.Request(ctx, request("other"), 0); err != nil || string(f.Payload) != "other" {
			t.Fatalf("request on the same session after an overflow: %q, %v", f.Payload, err)
		}
		for i := range buffer {
			b, err := st.Recv()
			if err != nil || string(b) != strconv.Itoa(i) {
				t.Fatalf("buffered chunk %d: %q, %v", i, b, err)
			}
		}
		if _, err := st.Recv(); !errors.Is(err, spear.ErrStreamOverflow) {
			t.Fatalf("after the buffered chunks: %v, want spear.ErrStreamOverflow", err)
		}
		if agent.Err() != nil {
			t.Fatalf("the session ended: %v", agent.Err())
		}
		if n := agent.Stats().Snapshot().Errors["overflow"]; n != 1 {
			t.Errorf("overflow errors counted: %d, want 1", n)
		}
	})
}

func TestHeartbeatAnsweredWithAck(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		s, peer := raw(t, kind, session.Config{})
		// An ack is not answered; a probe is, echoing id and payload.
		if err := peer.WriteFrame(&wire.Frame{Type: wire.TypeHeartbeat, Flags: wire.FlagAck, Payload: []byte("ack")}); err != nil {
			t.Fatal(err)
		}
		if err := peer.WriteFrame(&wire.Frame{Type: wire.TypeHeartbeat, ID: 9, Payload: []byte("probe")}); err != nil {
			t.Fatal(err)
		}
		f, err := peer.ReadFrame()
		if err != nil || f.Type != wire.TypeHeartbeat || f.Flags != wire.FlagAck || f.ID != 9 || string(f.Payload) != "probe" {
			t.Fatalf("answer to a heartbeat: %+v, %v; want an ack echoing it", f, err)
		}
		if s.Err() != nil {
			t.Fatal(s.Err())
		}
	})
}

func TestHeartbeatTimeout(t *testing.T) {
	// The peer never reads nor writes. (Memory only: on an unbuffered
	// net.Pipe the probe itself would block until the write timeout.)
	var closedWith atomic.Value
	agent, _ := raw(t, "memory", session.Config{
		Agent:             true,
		HeartbeatInterval: 10 * time.Millisecond,
		HeartbeatMisses:   3,
		OnClose:           func(err error) { closedWith.Store(err) },
	})
	ctx := testContext(t)
	errc := make(chan error, 1)
	go func() { _, err := agent.Request(ctx, request("never answered"), 0); errc <- err }()
	if err := recv(t, ctx, errc, "the pending request to fail"); !errors.Is(err, spear.ErrHeartbeatTimeout) {
		t.Fatalf("pending request: %v, want spear.ErrHeartbeatTimeout", err)
	}
	recv(t, ctx, agent.Done(), "the session to end")
	err := agent.Err()
	if !errors.Is(err, spear.ErrHeartbeatTimeout) || !errors.Is(err, spear.ErrTimeout) || !errors.Is(err, spear.ErrConnectionFailed) {
		t.Fatalf("session error %v, want spear.ErrHeartbeatTimeout (a timeout and a lost connection)", err)
	}
	if got, _ := closedWith.Load().(error); got != err {
		t.Errorf("OnClose got %v, want the session's error", got)
	}
	if !errors.Is(context.Cause(agent.Context()), spear.ErrHeartbeatTimeout) {
		t.Errorf("session context cause: %v", context.Cause(agent.Context()))
	}
	if n := agent.Stats().Snapshot().Errors["heartbeat"]; n != 1 {
		t.Errorf("heartbeat errors counted: %d, want 1", n)
	}
}

// ackCounter passes frames through and reports each heartbeat ack read.
type ackCounter struct {
	transport.Conn
	acks chan struct{}
}

func (c *ackCounter) ReadFrame() (wire.Frame, error) {
	f, err := c.Conn.ReadFrame()
	if err == nil && f.Type == wire.TypeHeartbeat && f.Flags&wire.FlagAck != 0 {
		select {
		case c.acks <- struct{}{}:
		default:
		}
	}
	return f, err
}

func TestHeartbeatKeepsAnsweringPeerAlive(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		a, b := conns(t, kind)
		counted := &ackCounter{Conn: a, acks: make(chan struct{}, 1)}
		// Generous misses: the peer only has to answer within a second,
		// even on a loaded machine.
		agent := start(t, counted, session.Config{Agent: true, HeartbeatInterval: 20 * time.Millisecond, HeartbeatMisses: 50})
		start(t, b, session.Config{})
		ctx := testContext(t)
		for range 5 {
			recv(t, ctx, counted.acks, "a heartbeat ack")
		}
		if err := agent.Err(); err != nil {
			t.Fatalf("an idle session with an answering peer ended: %v", err)
		}
		// The acks echoed the probes' clock: their round trip was measured.
		if rtt := agent.Stats().Snapshot().HeartbeatRTT; rtt <= 0 || rtt >= time.Minute {
			t.Fatalf("heartbeat RTT after 5 acks = %s, want a measured round trip", rtt)
		}
	})
}

func TestClose(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		started := make(chan struct{}, 8)
		h := session.HandlerFunc(func(ctx context.Context, _ wire.Frame, _ *session.Responder) {
			started <- struct{}{}
			<-ctx.Done() // never answers
		})
		var onClose atomic.Int32
		agent, inst := pair(t, kind, session.Config{OnClose: func(error) { onClose.Add(1) }}, session.Config{Handler: h})
		ctx := testContext(t)
		const pending = 5
		errc := make(chan error, pending+1)
		for range pending {
			go func() { _, err := agent.Request(ctx, request("x"), 0); errc <- err }()
		}
		st, err := agent.OpenStream(ctx, request("stream"))
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, err := st.Recv(); errc <- err }()
		for range pending + 1 {
			recv(t, ctx, started, "the handlers to start")
		}

		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { agent.Close(nil) })
		}
		wg.Wait()
		select {
		case <-agent.Done():
		default:
			t.Fatal("Close returned before the session was done")
		}
		for range pending + 1 {
			if err := recv(t, ctx, errc, "pending requests to fail"); !errors.Is(err, spear.ErrChannelClosed) {
				t.Fatalf("pending request after Close: %v, want spear.ErrChannelClosed", err)
			}
		}
		if !errors.Is(agent.Err(), spear.ErrChannelClosed) {
			t.Errorf("Err() = %v", agent.Err())
		}
		if _, err := agent.Request(ctx, request("late"), 0); !errors.Is(err, spear.ErrChannelClosed) {
			t.Errorf("request after Close: %v, want spear.ErrChannelClosed", err)
		}
		if _, err := agent.OpenStream(ctx, request("late")); !errors.Is(err, spear.ErrChannelClosed) {
			t.Errorf("stream after Close: %v, want spear.ErrChannelClosed", err)
		}
		if err := agent.Send(&wire.Frame{Type: wire.TypeMessage}); err == nil {
			t.Error("Send after Close succeeded")
		}
		agent.Close(errors.New("another cause")) // later causes do not replace the first
		if !errors.Is(agent.Err(), spear.ErrChannelClosed) {
			t.Errorf("Err() after a second Close = %v", agent.Err())
		}
		if n := onClose.Load(); n != 1 {
			t.Errorf("OnClose ran %d times", n)
		}

		// The peer lost the connection without a goodbye, and its handlers
		// were cancelled.
		recv(t, ctx, inst.Done(), "the peer session to end")
		if !errors.Is(inst.Err(), spear.ErrPeerGone) {
			t.Errorf("peer session error %v, want spear.ErrPeerGone", inst.Err())
		}
		inst.Wait()
	})
}

func TestCloseWithCause(t *testing.T) {
	h := session.HandlerFunc(func(ctx context.Context, _ wire.Frame, _ *session.Responder) { <-ctx.Done() })
	agent, _ := pair(t, "memory", session.Config{}, session.Config{Handler: h})
	ctx := testContext(t)
	errc := make(chan error, 1)
	go func() { _, err := agent.Request(ctx, request("x"), 0); errc <- err }()
	// Close may come before the request is registered; either way the
	// request must fail with the cause.
	cause := fmt.Errorf("%w: test cause", spear.ErrReplaced)
	agent.Close(cause)
	if err := recv(t, ctx, errc, "the request to fail"); !errors.Is(err, spear.ErrReplaced) {
		t.Fatalf("request failed with %v, want the close cause", err)
	}
}

func TestPeerGone(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		started := make(chan struct{})
		h := session.HandlerFunc(func(ctx context.Context, _ wire.Frame, _ *session.Responder) {
			close(started)
			<-ctx.Done()
		})
		agent, inst := pair(t, kind, session.Config{}, session.Config{Handler: h})
		ctx := testContext(t)
		errc := make(chan error, 1)
		go func() { _, err := agent.Request(ctx, request("x"), 0); errc <- err }()
		recv(t, ctx, started, "the handler to start")
		inst.Conn().Close() // the instance dies without a goodbye
		err := recv(t, ctx, errc, "the pending request to fail")
		if !errors.Is(err, spear.ErrPeerGone) || !errors.Is(err, spear.ErrConnectionFailed) {
			t.Fatalf("pending request: %v, want spear.ErrPeerGone", err)
		}
		recv(t, ctx, agent.Done(), "the session to end")
		if !errors.Is(agent.Err(), spear.ErrPeerGone) {
			t.Errorf("Err() = %v, want spear.ErrPeerGone", agent.Err())
		}
	})
}

func TestGoAwayIsAnOrderlyEnd(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		agent, inst := pair(t, kind, session.Config{}, session.Config{})
		ctx := testContext(t)
		inst.GoAway(spear.CodeUnavailable, "shutting down", nil)
		recv(t, ctx, agent.Done(), "the agent's session to end")
		err := agent.Err()
		if !errors.Is(err, spear.ErrChannelClosed) || errors.Is(err, spear.ErrPeerGone) || !strings.Contains(err.Error(), "shutting down") {
			t.Fatalf("after the peer's CLOSE: %v, want an orderly close carrying the reason", err)
		}
	})
}

func TestMessageReachesOnMessage(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		got := make(chan string, 1)
		agent, _ := pair(t, kind, session.Config{},
			session.Config{OnMessage: func(f wire.Frame) { got <- string(f.Payload) }})
		ctx := testContext(t)
		if err := agent.Send(&wire.Frame{Type: wire.TypeMessage, Payload: []byte("hi")}); err != nil {
			t.Fatal(err)
		}
		if m := recv(t, ctx, got, "the message"); m != "hi" {
			t.Fatalf("OnMessage got %q", m)
		}
	})
}

func TestHandshakeFrameAfterHandshake(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		s, peer := raw(t, kind, session.Config{})
		ctx := testContext(t)
		if err := peer.WriteFrame(&wire.Frame{Type: wire.TypeAuthRequest}); err != nil {
			t.Fatal(err)
		}
		f, err := peer.ReadFrame()
		if err != nil || f.Type != wire.TypeError {
			t.Fatalf("answer to a late AUTH_REQUEST: %+v, %v; want an ERROR", f, err)
		}
		var e spearpb.Error
		if err := proto.Unmarshal(f.Payload, &e); err != nil || spear.Code(e.Code) != spear.CodeInvalidMessage {
			t.Errorf("ERROR code %d (%v), want %d", e.Code, err, spear.CodeInvalidMessage)
		}
		recv(t, ctx, s.Done(), "the session to end")
		if !errors.Is(s.Err(), spear.ErrInvalidMessage) {
			t.Fatalf("Err() = %v, want spear.ErrInvalidMessage", s.Err())
		}
		if errs := s.Stats().Snapshot().Errors; len(errs) != 1 || errs["invalid"] != 1 {
			t.Errorf("errors counted: %v, want one invalid", errs)
		}
	})
}

func TestMalformedFrameEndsSession(t *testing.T) {
	a, b := net.Pipe()
	s := start(t, transport.NewStreamConn(b, transport.Info{}, 8, 0), session.Config{})
	peer := transport.NewStreamConn(a, transport.Info{}, 0, 0)
	t.Cleanup(func() { peer.Close() })
	ctx := testContext(t)
	go func() { _ = peer.WriteFrame(&wire.Frame{Type: wire.TypeMessage, Payload: make([]byte, 9)}) }()
	recv(t, ctx, s.Done(), "the session to end")
	var tooLarge *wire.FrameTooLargeError
	if !errors.As(s.Err(), &tooLarge) || !errors.Is(s.Err(), spear.ErrInvalidMessage) {
		t.Fatalf("Err() = %v, want the *wire.FrameTooLargeError", s.Err())
	}
	if errs := s.Stats().Snapshot().Errors; len(errs) != 1 || errs["invalid"] != 1 {
		t.Errorf("errors counted: %v, want one invalid", errs)
	}
}

func TestDuplicateRequestID(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		started, release := make(chan struct{}), make(chan struct{})
		h := session.HandlerFunc(func(ctx context.Context, req wire.Frame, r *session.Responder) {
			close(started) // a second call would panic
			select {
			case <-release:
				reply(r, string(req.Payload))
			case <-ctx.Done():
			}
		})
		s, peer := raw(t, kind, session.Config{Handler: h})
		ctx := testContext(t)
		if err := peer.WriteFrame(&wire.Frame{Type: wire.TypeExecuteRequest, ID: 1, Payload: []byte("first")}); err != nil {
			t.Fatal(err)
		}
		recv(t, ctx, started, "the first handler")
		if err := peer.WriteFrame(&wire.Frame{Type: wire.TypeExecuteRequest, ID: 1, Payload: []byte("second")}); err != nil {
			t.Fatal(err)
		}
		f, err := peer.ReadFrame()
		if err != nil || f.Type != wire.TypeError || f.ID != 1 {
			t.Fatalf("answer to a duplicate id: %+v, %v; want an ERROR for id 1", f, err)
		}
		close(release)
		f, err = peer.ReadFrame()
		if err != nil || f.Type != wire.TypeExecuteResponse || f.ID != 1 || string(f.Payload) != "first" {
			t.Fatalf("answer to the first request: %+v, %v", f, err)
		}
		if s.Err() != nil {
			t.Fatalf("the session ended: %v", s.Err())
		}
	})
}

func TestNoHandlerAnswersNotFound(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		agent, _ := pair(t, kind, session.Config{}, session.Config{})
		_, err := agent.Request(testContext(t), request("x"), 0)
		var re *spear.RemoteError
		if !errors.As(err, &re) || re.Code != spear.CodeNotFound {
			t.Fatalf("request to a session without a handler: %v, want a NOT_FOUND remote error", err)
		}
		if n := agent.Stats().Snapshot().Errors["remote"]; n != 1 {
			t.Errorf("remote errors counted: %d, want 1", n)
		}
	})
}

func TestRequestIDParity(t *testing.T) {
	for _, role := range []struct {
		name  string
		agent bool
		first uint64
	}{{"agent", true, 1}, {"instance", false, 2}} {
		t.Run(role.name, func(t *testing.T) {
			s, peer := raw(t, "memory", session.Config{Agent: role.agent})
			ctx := testContext(t)
			for i := range 3 {
				errc := make(chan error, 1)
				go func() { _, err := s.Request(ctx, request("x"), 0); errc <- err }()
				f, err := peer.ReadFrame()
				if want := role.first + 2*uint64(i); err != nil || f.ID != want {
					t.Fatalf("request %d has id %d (%v), want %d", i, f.ID, err, want)
				}
				if err := peer.WriteFrame(&wire.Frame{Type: wire.TypeExecuteResponse, ID: f.ID}); err != nil {
					t.Fatal(err)
				}
				if err := recv(t, ctx, errc, "the answer"); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestOneWaySignalAnswersAreDropped(t *testing.T) {
	handled := make(chan error, 1)
	h := session.HandlerFunc(func(_ context.Context, req wire.Frame, r *session.Responder) {
		handled <- r.Send(&wire.Frame{Type: wire.TypeExecuteResponse, Payload: []byte("dropped")})
	})
	_, peer := raw(t, "memory", session.Config{Handler: h})
	ctx := testContext(t)
	if err := peer.WriteFrame(&wire.Frame{Type: wire.TypeSignal}); err != nil { // id 0: one-way
		t.Fatal(err)
	}
	if err := recv(t, ctx, handled, "the signal handler"); err != nil {
		t.Fatalf("answering a one-way signal: %v", err)
	}
	if err := peer.WriteFrame(&wire.Frame{Type: wire.TypeHeartbeat}); err != nil {
		t.Fatal(err)
	}
	if f, err := peer.ReadFrame(); err != nil || f.Type != wire.TypeHeartbeat {
		t.Fatalf("next frame from the session: %+v, %v; want only the heartbeat ack", f, err)
	}
}

func TestWaitWaitsForHandlers(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	var finished atomic.Bool
	h := session.HandlerFunc(func(ctx context.Context, _ wire.Frame, r *session.Responder) {
		close(started)
		<-release
		finished.Store(true)
		reply(r, "done")
	})
	agent, inst := pair(t, "memory", session.Config{}, session.Config{Handler: h})
	ctx := testContext(t)
	go func() { _, _ = agent.Request(ctx, request("x"), 0) }()
	recv(t, ctx, started, "the handler to start")
	waited := make(chan struct{})
	go func() {
		inst.Wait()
		close(waited)
	}()
	close(release)
	recv(t, ctx, waited, "Wait to return")
	if !finished.Load() {
		t.Fatal("Wait returned while a handler was still running")
	}
}

func TestWaitWhileRequestsKeepArriving(t *testing.T) {
	// Wait may be called while the peer keeps opening requests (the SDK
	// drains on terminate while the connection is still up).
	agent, inst := pair(t, "memory", session.Config{}, session.Config{Handler: echo})
	ctx := testContext(t)
	const n = 200
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range n / 4 {
				if _, err := agent.Request(ctx, request("x"), 0); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	stop := make(chan struct{})
	waiters := make(chan struct{})
	go func() {
		defer close(waiters)
		for {
			select {
			case <-stop:
				return
			default:
				inst.Wait()
			}
		}
	}()
	wg.Wait()
	close(stop)
	recv(t, ctx, waiters, "the waiting loop")
}

func TestStats(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		h := session.HandlerFunc(func(ctx context.Context, req wire.Frame, r *session.Responder) {
			if string(req.Payload) == "fail" {
				r.Error(spear.CodeInternal, "no")
				return
			}
			echo(ctx, req, r)
		})
		shared := stats.New()
		agent, inst := pair(t, kind, session.Config{Stats: shared}, session.Config{Handler: h})
		if agent.Stats() != shared {
			t.Fatal("the session does not use the counters it was given")
		}
		ctx := testContext(t)
		const n = 5
		for range n {
			if _, err := agent.Request(ctx, request("abc"), 0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := agent.Request(ctx, request("fail"), 0); err == nil {
			t.Fatal("want an error")
		}
		frame := wire.HeaderSize + len("abc")
		a := agent.Stats().Snapshot()
		if a.MessagesSent != n+1 || a.MessagesReceived != n+1 || a.BytesSent != uint64(n*frame+wire.HeaderSize+len("fail")) {
			t.Errorf("agent traffic %+v", a)
		}
		if a.Latency.Count != n+1 || a.Latency.Max <= 0 {
			t.Errorf("agent latency %+v, want %d samples", a.Latency, n+1)
		}
		if len(a.Errors) != 1 || a.Errors["remote"] != 1 {
			t.Errorf("agent errors %v, want one remote error", a.Errors)
		}
		// The instance counts its own side. A handler counts its answer
		// after writing it, so wait for the handlers to return.
		inst.Wait()
		i := inst.Stats().Snapshot()
		if i.MessagesReceived != n+1 || i.MessagesSent != n+1 || i.BytesReceived != a.BytesSent || i.BytesSent != a.BytesReceived {
			t.Errorf("instance traffic %+v, agent %+v", i, a)
		}
	})
}
