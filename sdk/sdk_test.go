package sdk_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/session"
	"github.com/spear-go/spear/sdk"
	"github.com/spear-go/spear/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newChannel returns a channel of the given type from a factory the test
// closes at its end.
func newChannel(t *testing.T, typ channel.Type) *channel.Channel {
	t.Helper()
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	rt := spear.Process
	if typ == channel.Memory {
		rt = spear.Wasm
	}
	ch, err := f.CreateChannel(testContext(t), rt, &channel.Config{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// serve runs an instance for ch's credentials with opts' handlers until
// the test ends, and returns the instance and Serve's result.
func serve(t *testing.T, ch *channel.Channel, opts sdk.Options) (*sdk.Instance, <-chan error) {
	t.Helper()
	cr := ch.Credentials()
	opts.ID, opts.Channel, opts.Address = cr.ID, string(cr.Type), cr.Address
	if opts.Secret == nil {
		opts.Secret = cr.Secret
	}
	if opts.Handler == nil {
		opts.Handler = echo
	}
	opts.MinBackoff, opts.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
	in, err := sdk.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, finished := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(finished)
		done <- in.Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(20 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
		select {
		case err := <-done: // unless the test took it
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		default:
		}
	})
	return in, done
}

// connected starts an instance and waits for it to be bound to ch.
func connected(t *testing.T, ch *channel.Channel, opts sdk.Options) (*sdk.Instance, <-chan error) {
	t.Helper()
	in, done := serve(t, ch, opts)
	if err := ch.WaitConnected(testContext(t)); err != nil {
		t.Fatal(err)
	}
	return in, done
}

var echo = sdk.HandlerFunc(func(_ context.Context, r *sdk.Request) ([]byte, error) {
	return append([]byte(r.Method+":"), r.Payload...), nil
})

func execute(ctx context.Context, ch *channel.Channel, method string) (string, error) {
	out, err := channel.Execute(ctx, ch, channel.Invocation{Method: method, Payload: []byte("p")})
	return string(out), err
}

func remoteCode(err error) (spear.Code, bool) {
	var re *spear.RemoteError
	if !errors.As(err, &re) {
		return 0, false
	}
	return re.Code, true
}

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

func TestTerminateWaitsForInFlightRequests(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	h := sdk.HandlerFunc(func(ctx context.Context, r *sdk.Request) ([]byte, error) {
		if r.Method == "slow" {
			close(started)
			<-release // deliberately ignores ctx: in-flight work must finish
		}
		return []byte(r.Method + " done"), nil
	})
	ch := newChannel(t, channel.Memory)
	_, done := connected(t, ch, sdk.Options{Handler: h})
	ctx := testContext(t)

	slow := make(chan string, 1)
	go func() {
		out, err := execute(ctx, ch, "slow")
		if err != nil {
			out = err.Error()
		}
		slow <- out
	}()
	recv(t, ctx, started, "the slow request to start")
	if err := channel.SendSignal(ctx, ch, channel.SignalTerminate, "", nil); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	// Draining: the slow request still runs, new ones are refused.
	if _, err := execute(ctx, ch, "new"); !hasCode(err, spear.CodeUnavailable) {
		t.Errorf("request while terminating: %v, want CodeUnavailable", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	default:
	}
	close(release)
	if out := recv(t, ctx, slow, "the slow answer"); out != "slow done" {
		t.Fatalf("in-flight request: %q", out)
	}
	if err := recv(t, ctx, done, "Serve to return"); err != nil {
		t.Fatalf("Serve after terminate: %v, want nil", err)
	}
	// The instance said goodbye, and did not reconnect.
	recv(t, ctx, ch.Disconnected(), "the instance to disconnect")
	if ch.IsConnected() {
		t.Error("the channel is connected after the instance terminated")
	}
}

// Requests sent before the terminate signal run, even when their handlers
// start after it (handlers run on workers, in no set order); only later
// requests are refused.
func TestTerminateServesRequestsSentBeforeIt(t *testing.T) {
	ch := newChannel(t, channel.Unix)
	_, done := connected(t, ch, sdk.Options{})
	ctx := testContext(t)
	var streams []*channel.Stream
	for range 64 {
		// A stream's request is written when ExecuteStream returns, so
		// all of them precede the signal on the connection.
		st, err := channel.ExecuteStream(ctx, ch, channel.Invocation{Method: "before"})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		streams = append(streams, st)
	}
	if err := channel.SendSignal(ctx, ch, channel.SignalTerminate, "", nil); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	for i, st := range streams {
		if out, err := st.Recv(); err != nil || string(out) != "before:" {
			t.Fatalf("request %d, sent before terminate: %q, %v", i, out, err)
		}
	}
	if err := recv(t, ctx, done, "Serve to return"); err != nil {
		t.Fatalf("Serve after terminate: %v, want nil", err)
	}
}

func hasCode(err error, code spear.Code) bool {
	c, ok := remoteCode(err)
	return ok && c == code
}

func TestPauseResume(t *testing.T) {
	ch := newChannel(t, channel.Memory)
	connected(t, ch, sdk.Options{})
	ctx := testContext(t)
	if err := channel.SendSignal(ctx, ch, channel.SignalPause, "", nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := execute(ctx, ch, "m"); !hasCode(err, spear.CodeUnavailable) {
			t.Fatalf("request while paused: %v, want CodeUnavailable", err)
		}
	}
	if err := channel.SendSignal(ctx, ch, channel.SignalResume, "", nil); err != nil {
		t.Fatal(err)
	}
	if out, err := execute(ctx, ch, "m"); err != nil || out != "m:p" {
		t.Fatalf("request after resume: %q, %v", out, err)
	}
}

func TestCustomSignal(t *testing.T) {
	ctx := testContext(t)
	t.Run("OnSignal", func(t *testing.T) {
		got := make(chan sdk.Signal, 1)
		ch := newChannel(t, channel.Memory)
		connected(t, ch, sdk.Options{OnSignal: func(_ context.Context, s sdk.Signal) error {
			if s.Name == "refuse" {
				return sdk.Error(spear.CodeResourceExhausted, "not now")
			}
			got <- s
			return nil
		}})
		if err := channel.SendSignal(ctx, ch, channel.SignalCustom, "reload", []byte("cfg")); err != nil {
			t.Fatal(err)
		}
		s := recv(t, ctx, got, "the signal")
		if s.Kind != channel.SignalCustom || s.Name != "reload" || string(s.Data) != "cfg" {
			t.Fatalf("OnSignal got %+v", s)
		}
		err := channel.SendSignal(ctx, ch, channel.SignalCustom, "refuse", nil)
		if !hasCode(err, spear.CodeResourceExhausted) || !strings.Contains(err.Error(), "not now") {
			t.Fatalf("signal refused by OnSignal: %v, want its code and message", err)
		}
	})
	t.Run("without OnSignal", func(t *testing.T) {
		ch := newChannel(t, channel.Memory)
		connected(t, ch, sdk.Options{})
		if err := channel.SendSignal(ctx, ch, channel.SignalCustom, "reload", nil); !hasCode(err, spear.CodeNotFound) {
			t.Fatalf("custom signal without OnSignal: %v, want CodeNotFound", err)
		}
	})
}

func TestStreamingOutput(t *testing.T) {
	// The handler writes a chunk only after the caller has read the one
	// before, so gathered output would deadlock.
	acks := make(chan struct{})
	h := sdk.HandlerFunc(func(ctx context.Context, r *sdk.Request) ([]byte, error) {
		for _, c := range []string{"a", "b", "c"} {
			if _, err := r.Write([]byte(c)); err != nil {
				return nil, err
			}
			if r.Streaming() {
				select {
				case <-acks:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
		}
		return []byte("end"), nil
	})
	ch := newChannel(t, channel.Memory)
	connected(t, ch, sdk.Options{Handler: h})
	ctx := testContext(t)

	st, err := channel.ExecuteStream(ctx, ch, channel.Invocation{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, want := range []string{"a", "b", "c"} {
		b, err := st.Recv()
		if err != nil || string(b) != want {
			t.Fatalf("chunk: %q, %v; want %q", b, err, want)
		}
		acks <- struct{}{}
	}
	if b, err := st.Recv(); err != nil || string(b) != "end" {
		t.Fatalf("result chunk: %q, %v", b, err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("after the result: %v, want io.EOF", err)
	}

	// A unary caller gets the written output ahead of the result.
	if out, err := execute(ctx, ch, ""); err != nil || out != "abcend" {
		t.Fatalf("unary caller: %q, %v; want \"abcend\"", out, err)
	}
}

func TestHandlerPanicIsInternalError(t *testing.T) {
	h := sdk.HandlerFunc(func(_ context.Context, r *sdk.Request) ([]byte, error) {
		if r.Method == "panic" {
			panic("bad input")
		}
		return []byte("ok"), nil
	})
	ch := newChannel(t, channel.Memory)
	connected(t, ch, sdk.Options{Handler: h})
	ctx := testContext(t)
	_, err := execute(ctx, ch, "panic")
	if !hasCode(err, spear.CodeInternal) || !strings.Contains(err.Error(), "bad input") {
		t.Fatalf("panicking handler: %v, want CodeInternal naming the panic", err)
	}
	if out, err := execute(ctx, ch, "fine"); err != nil || out != "ok" {
		t.Fatalf("request after a panic: %q, %v", out, err)
	}
}

func TestHandlerErrors(t *testing.T) {
	h := sdk.HandlerFunc(func(_ context.Context, r *sdk.Request) ([]byte, error) {
		if r.Method == "coded" {
			return nil, sdk.Error(spear.CodeNotFound, "no such method")
		}
		return nil, errors.New("plain failure")
	})
	ch := newChannel(t, channel.Memory)
	connected(t, ch, sdk.Options{Handler: h})
	ctx := testContext(t)
	_, err := execute(ctx, ch, "coded")
	var re *spear.RemoteError
	if !errors.As(err, &re) || re.Code != spear.CodeNotFound || re.Message != "no such method" {
		t.Errorf("coded error: %v", err)
	}
	if _, err := execute(ctx, ch, "plain"); !hasCode(err, spear.CodeInternal) || !strings.Contains(err.Error(), "plain failure") {
		t.Errorf("plain error: %v, want CodeInternal with its text", err)
	}
}

func TestHandlerContext(t *testing.T) {
	deadlines := make(chan time.Duration, 1)
	cancelled := make(chan error, 1)
	started := make(chan struct{}, 1)
	h := sdk.HandlerFunc(func(ctx context.Context, r *sdk.Request) ([]byte, error) {
		switch r.Method {
		case "deadline":
			d, ok := ctx.Deadline()
			if !ok {
				deadlines <- -1
			} else {
				deadlines <- time.Until(d)
			}
		case "block":
			started <- struct{}{}
			<-ctx.Done()
			cancelled <- ctx.Err()
			return nil, ctx.Err()
		}
		return nil, nil
	})
	ch := newChannel(t, channel.Memory)
	connected(t, ch, sdk.Options{Handler: h})
	ctx := testContext(t)

	// The caller's deadline travels as timeout_ms.
	const timeout = time.Minute
	dctx, cancel := context.WithTimeout(ctx, timeout)
	if _, err := execute(dctx, ch, "deadline"); err != nil {
		t.Fatal(err)
	}
	cancel()
	if left := recv(t, ctx, deadlines, "the deadline"); left <= 0 || left > timeout {
		t.Fatalf("handler deadline %v from now, want within the caller's %v", left, timeout)
	}

	// The caller giving up cancels the handler.
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { _, err := execute(cctx, ch, "block"); errc <- err }()
	recv(t, ctx, started, "the handler to start")
	cancel()
	if err := recv(t, ctx, errc, "the cancelled call"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	if err := recv(t, ctx, cancelled, "the handler's context to end"); !errors.Is(err, context.Canceled) {
		t.Fatalf("handler context: %v, want context.Canceled", err)
	}
}

func TestReconnectsWhenAgentDropsConnection(t *testing.T) {
	for _, typ := range []channel.Type{channel.Memory, channel.Unix} {
		t.Run(string(typ), func(t *testing.T) {
			h := sdk.HandlerFunc(func(_ context.Context, r *sdk.Request) ([]byte, error) {
				return []byte("from sdk"), nil
			})
			ch := newChannel(t, typ)
			connected(t, ch, sdk.Options{Handler: h})
			ctx := testContext(t)
			if out, err := execute(ctx, ch, ""); err != nil || out != "from sdk" {
				t.Fatalf("before: %q, %v", out, err)
			}

			// A second connection authenticating as the same instance
			// replaces the SDK's: the agent sends the SDK a CLOSE.
			cr := ch.Credentials()
			conn, err := sdk.Dial(ctx, string(cr.Type), cr.Address)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := auth.Connect(ctx, conn, cr.ID, cr.Secret); err != nil {
				t.Fatal(err)
			}
			usurper := session.Start(conn, session.Config{})
			defer usurper.Close(nil)
			// The SDK reconnects in turn, which replaces the usurper.
			recv(t, ctx, usurper.Done(), "the SDK to reconnect and take over")
			if !errors.Is(usurper.Err(), spear.ErrChannelClosed) {
				t.Errorf("replaced connection ended with %v", usurper.Err())
			}
			if out, err := execute(ctx, ch, ""); err != nil || out != "from sdk" {
				t.Fatalf("after reconnecting: %q, %v", out, err)
			}
		})
	}
}

func TestServeRetriesUntilContextEnds(t *testing.T) {
	ch := newChannel(t, channel.Memory)
	cr := ch.Credentials()
	ch.Close() // nothing listens at the address any more
	in, err := sdk.New(sdk.Options{Handler: echo, ID: cr.ID, Secret: cr.Secret, Channel: string(cr.Type), Address: cr.Address,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := in.Serve(ctx); err != nil {
		t.Fatalf("Serve with an unreachable agent, after its context ended: %v, want nil", err)
	}
}

func TestAuthFailureIsFinal(t *testing.T) {
	for _, typ := range []channel.Type{channel.Memory, channel.Unix} {
		t.Run(string(typ), func(t *testing.T) {
			ch := newChannel(t, typ)
			cr := ch.Credentials()
			wrong := auth.NewSecret()
			in, err := sdk.New(sdk.Options{Handler: echo, ID: cr.ID, Secret: wrong, Channel: string(cr.Type), Address: cr.Address,
				MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx := testContext(t)
			if err := in.Serve(ctx); !errors.Is(err, spear.ErrAuthFailed) {
				t.Fatalf("Serve with a wrong secret: %v, want spear.ErrAuthFailed", err)
			}
			if ch.IsConnected() {
				t.Error("an instance with a wrong secret got connected")
			}
		})
	}
}

func TestUnsupportedChannelType(t *testing.T) {
	in, err := sdk.New(sdk.Options{Handler: echo, ID: spear.InstanceID{Runtime: spear.Process, Name: "a"},
		Secret: spear.Secret("s"), Channel: "carrier-pigeon", Address: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Serve(testContext(t)); !errors.Is(err, spear.ErrUnsupportedTransport) {
		t.Fatalf("Serve: %v, want spear.ErrUnsupportedTransport", err)
	}
}

func TestMessagesBothWays(t *testing.T) {
	got := make(chan string, 1)
	ch := newChannel(t, channel.Memory)
	cr := ch.Credentials()
	in, err := sdk.New(sdk.Options{Handler: echo, ID: cr.ID, Secret: cr.Secret, Channel: string(cr.Type), Address: cr.Address})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Send([]byte("early")); !errors.Is(err, spear.ErrNotConnected) {
		t.Fatalf("Send before Serve: %v, want spear.ErrNotConnected", err)
	}
	in, _ = connected(t, ch, sdk.Options{OnMessage: func(p []byte) { got <- string(p) }})
	ctx := testContext(t)
	// A round trip proves the instance serves, and so can send.
	if _, err := execute(ctx, ch, ""); err != nil {
		t.Fatal(err)
	}
	if err := in.Send([]byte("to agent")); err != nil {
		t.Fatal(err)
	}
	m, err := ch.Receive(ctx)
	if err != nil || m.Type != wire.TypeMessage || string(m.Payload) != "to agent" {
		t.Fatalf("Receive: %+v, %v", m, err)
	}
	if err := ch.Send(ctx, channel.Message{Type: wire.TypeMessage, Payload: []byte("to instance")}); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, ctx, got, "the agent's message"); p != "to instance" {
		t.Fatalf("OnMessage got %q", p)
	}
}

func TestFromEnv(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("0a0b0c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	valid := map[string]string{
		spear.EnvInstanceID: "tenant:process:fn-1",
		spear.EnvSecret:     "00ff",
		spear.EnvChannel:    "unix",
		spear.EnvAddress:    "/run/spear/1.sock",
	}
	tests := []struct {
		name   string
		change map[string]string
		ok     bool
	}{
		{"valid", nil, true},
		{"missing id", map[string]string{spear.EnvInstanceID: ""}, false},
		{"invalid id", map[string]string{spear.EnvInstanceID: "no-runtime"}, false},
		{"unknown runtime", map[string]string{spear.EnvInstanceID: "vm:fn"}, false},
		{"missing secret", map[string]string{spear.EnvSecret: ""}, false},
		{"secret not hex", map[string]string{spear.EnvSecret: "xyz"}, false},
		{"secret file", map[string]string{spear.EnvSecret: "", spear.EnvSecretFile: secretFile}, true},
		{"secret file over the variable", map[string]string{spear.EnvSecretFile: secretFile}, true},
		{"missing secret file", map[string]string{spear.EnvSecret: "", spear.EnvSecretFile: secretFile + ".none"}, false},
		{"missing address", map[string]string{spear.EnvAddress: ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{spear.EnvInstanceID, spear.EnvSecretFD, spear.EnvSecret, spear.EnvSecretFile, spear.EnvChannel, spear.EnvAddress} {
				v, ok := tt.change[k]
				if !ok {
					v = valid[k]
				}
				t.Setenv(k, v)
			}
			var o sdk.Options
			err := o.FromEnv()
			if !tt.ok {
				if !errors.Is(err, spear.ErrConfig) {
					t.Fatalf("FromEnv: %v, want spear.ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := spear.InstanceID{Runtime: spear.Process, Namespace: "tenant", Name: "fn-1"}
			if o.ID != want || o.Channel != "unix" || o.Address != "/run/spear/1.sock" {
				t.Errorf("FromEnv gave id %v channel %q address %q", o.ID, o.Channel, o.Address)
			}
			wantSecret := "\x00\xff"
			if tt.change[spear.EnvSecretFile] != "" {
				wantSecret = "\x0a\x0b\x0c"
			}
			if string(o.Secret) != wantSecret {
				t.Errorf("secret % x, want % x", []byte(o.Secret), wantSecret)
			}
		})
	}

	t.Run("secret descriptor, process made non-dumpable", func(t *testing.T) {
		for k, v := range valid {
			t.Setenv(k, v)
		}
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := w.WriteString("0d0e0f\n"); err != nil {
			t.Fatal(err)
		}
		w.Close()
		// A duplicate, which FromEnv closes; r stays this test's.
		fd, err := syscall.Dup(int(r.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(spear.EnvSecretFD, strconv.Itoa(fd))
		var o sdk.Options
		if err := o.FromEnv(); err != nil {
			t.Fatal(err)
		}
		if string(o.Secret) != "\x0d\x0e\x0f" {
			t.Errorf("secret % x, want the descriptor's 0d 0e 0f", []byte(o.Secret))
		}
		if err := syscall.Close(fd); !errors.Is(err, syscall.EBADF) {
			t.Errorf("the secret's descriptor is still open (close: %v)", err)
		}
		if runtime.GOOS == "linux" {
			dumpable, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_GET_DUMPABLE, 0, 0)
			if errno != 0 || dumpable != 0 {
				t.Errorf("PR_GET_DUMPABLE = %d (%v) after reading the secret, want 0", dumpable, errno)
			}
		}
	})

	t.Run("explicit fields win", func(t *testing.T) {
		for k, v := range valid {
			t.Setenv(k, v)
		}
		id := spear.InstanceID{Runtime: spear.Wasm, Name: "mine"}
		o := sdk.Options{ID: id, Secret: spear.Secret("s"), Channel: "memory", Address: "memory:1"}
		if err := o.FromEnv(); err != nil {
			t.Fatal(err)
		}
		if o.ID != id || string(o.Secret) != "s" || o.Channel != "memory" || o.Address != "memory:1" {
			t.Errorf("FromEnv overwrote explicit fields: %+v", o)
		}
	})
}

func TestNewRequiresHandler(t *testing.T) {
	_, err := sdk.New(sdk.Options{ID: spear.InstanceID{Runtime: spear.Wasm, Name: "a"}, Secret: spear.Secret("s"), Channel: "memory", Address: "memory:1"})
	if !errors.Is(err, spear.ErrInvalidConfig) {
		t.Fatalf("New without a handler: %v, want spear.ErrInvalidConfig", err)
	}
}
