package wasm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/rawguest"
	"github.com/spear-go/spear/internal/wasmecho"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/runtime/runtimetest"
	"github.com/spear-go/spear/runtime/wasm"
	"github.com/spear-go/spear/wire"
)

// testTimeout bounds every wait; generous, for a loaded machine.
const testTimeout = 60 * time.Second

// The runtime is shared by the whole test binary, so that the example
// module is compiled once.
var shared struct {
	once sync.Once
	f    *channel.Factory
	rt   *wasm.Runtime
	err  error
}

var names atomic.Int64

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.rt != nil {
		if err := shared.rt.Close(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "close runtime:", err)
			code = 1
		}
		shared.f.Close()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// sharedFactory returns the shared runtime's channel factory.
func sharedFactory(tb testing.TB) *channel.Factory {
	sharedRuntime(tb)
	return shared.f
}

func sharedRuntime(tb testing.TB) *wasm.Runtime {
	tb.Helper()
	shared.once.Do(func() {
		log := slog.New(slog.DiscardHandler)
		if testing.Verbose() {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		}
		shared.f, shared.err = channel.NewFactory(channel.Options{Logger: log})
		if shared.err == nil {
			// Compiling the example takes seconds, and a minute under the
			// race detector on a busy machine; a cache on disk makes that
			// once per machine. It is keyed by wazero's version and the
			// module's hash.
			dir := filepath.Join(os.TempDir(), fmt.Sprintf("spear-wasm-test-cache-%d", os.Getuid()))
			shared.rt, shared.err = wasm.New(wasm.Options{Factory: shared.f, Logger: log, CacheDir: dir,
				Modules: map[string][]byte{"echo": wasmecho.Module}})
		}
		if shared.err == nil {
			shared.err = shared.rt.Compile(context.Background(), wasmecho.Module)
		}
	})
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.rt
}

func testContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// start starts an instance of the example module with a fresh name and
// stops it when the test ends.
func start(tb testing.TB, set runtime.Settings, spec wasm.Spec) *wasm.Instance {
	tb.Helper()
	rt := sharedRuntime(tb)
	if spec.Code == nil && spec.Module == "" {
		spec.Code = wasmecho.Module
	}
	id := spear.InstanceID{Runtime: spear.Wasm, Name: fmt.Sprintf("echo-%d", names.Add(1))}
	inst, err := rt.Start(testContext(tb), id, set, spec)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rt.Stop(context.Background(), inst) })
	return inst.(*wasm.Instance)
}

func call(ctx context.Context, inst runtime.Instance, method, payload string) (string, error) {
	out, err := channel.Execute(ctx, inst.Channel(), channel.Invocation{Method: method, Payload: []byte(payload)})
	return string(out), err
}

func mustCall(tb testing.TB, inst runtime.Instance, method, payload string) string {
	tb.Helper()
	out, err := call(testContext(tb), inst, method, payload)
	if err != nil {
		tb.Fatalf("%s(%q): %v", method, payload, err)
	}
	return out
}

// callAfterReset calls method once the instance has been replaced: a call
// that reaches the old module instance, or none, fails fast with a
// connection error, and the next attempt waits until the instance runs.
func callAfterReset(tb testing.TB, inst *wasm.Instance, method, payload string) string {
	tb.Helper()
	ctx := testContext(tb)
	for {
		out, err := call(ctx, inst, method, payload)
		if err == nil {
			return out
		}
		var re *spear.RemoteError
		retry := errors.Is(err, spear.ErrConnectionFailed) || errors.Is(err, spear.ErrNotConnected) ||
			errors.Is(err, spear.ErrSendFailed) ||
			errors.As(err, &re) && re.Code == spear.CodeUnavailable
		if !retry || ctx.Err() != nil {
			tb.Fatalf("%s after reset: %v", method, err)
		}
		if err := inst.WaitRunning(ctx); err != nil {
			tb.Fatal(err)
		}
	}
}

// request sends an EXECUTE_REQUEST whose timeout_ms is set apart from the
// caller's context, so the runtime's deadline is the one that fires.
func request(ctx context.Context, inst runtime.Instance, method string, timeoutMs uint64) error {
	b, _ := proto.Marshal(&spearpb.ExecuteRequest{Method: method, TimeoutMs: timeoutMs})
	_, err := inst.Channel().Request(ctx, channel.Message{Type: wire.TypeExecuteRequest, Payload: b})
	return err
}

func remoteCode(tb testing.TB, err error, want spear.Code) *spear.RemoteError {
	tb.Helper()
	var re *spear.RemoteError
	if !errors.As(err, &re) || re.Code != want {
		tb.Fatalf("got error %v, want a remote error with code %s", err, want)
	}
	return re
}

func TestEcho(t *testing.T) {
	inst := start(t, runtime.Settings{Function: "echo"}, wasm.Spec{})
	want := inst.ID().String() + "|hello"
	for _, method := range []string{"", "echo"} {
		if got := mustCall(t, inst, method, "hello"); got != want {
			t.Errorf("%q: got %q, want %q", method, got, want)
		}
	}
	info := inst.Info()
	if info.Status != runtime.StatusRunning || info.ID != inst.ID() || info.Function != "echo" || info.LastHealthCheck.IsZero() {
		t.Errorf("info = %+v", info)
	}
	if inst.Channel().Type() != channel.Memory {
		t.Errorf("channel type %s, want memory", inst.Channel().Type())
	}

	_, err := call(testContext(t), inst, "fail", "no such thing")
	if re := remoteCode(t, err, spear.CodeNotFound); re.Message != "no such thing" {
		t.Errorf("message %q", re.Message)
	}
	if inst.Resets() != 0 {
		t.Errorf("an error the guest returned reset the instance")
	}
}

func TestStream(t *testing.T) {
	inst := start(t, runtime.Settings{}, wasm.Spec{})
	st, err := channel.ExecuteStream(testContext(t), inst.Channel(), channel.Invocation{Method: "stream", Payload: []byte("ab")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var chunks []string
	for {
		b, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, string(b))
	}
	if got := strings.Join(chunks, ","); got != "ab,ab,ab" {
		t.Errorf("chunks %q", got)
	}
	// The instance serves the next request after a stream.
	mustCall(t, inst, "echo", "")
}

func TestInstancesHaveSeparateState(t *testing.T) {
	a := start(t, runtime.Settings{}, wasm.Spec{})
	b := start(t, runtime.Settings{}, wasm.Spec{})
	for i, step := range []struct {
		inst *wasm.Instance
		want string
	}{{a, "1"}, {a, "2"}, {b, "1"}, {a, "3"}, {b, "2"}} {
		if got := mustCall(t, step.inst, "count", ""); got != step.want {
			t.Errorf("step %d: count = %s, want %s", i, got, step.want)
		}
	}
}

func TestTrapResetsOnlyThatInstance(t *testing.T) {
	healthy := start(t, runtime.Settings{}, wasm.Spec{})
	for _, tc := range []struct {
		method, want string
	}{
		{"trap", "wasm guest trapped: wasm error: unreachable"},
		{"panic", "wasm guest trapped: exited with status 2"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			victim := start(t, runtime.Settings{}, wasm.Spec{})
			mustCall(t, victim, "count", "")
			mustCall(t, healthy, "count", "")

			_, err := call(testContext(t), victim, tc.method, "")
			re := remoteCode(t, err, spear.CodeInternal)
			if !strings.Contains(re.Message, tc.want) || !strings.Contains(re.Message, "wasm instance reset") {
				t.Errorf("message %q, want it to contain %q", re.Message, tc.want)
			}
			if s := victim.Info().Status; s != runtime.StatusDegraded && s != runtime.StatusRunning {
				t.Errorf("status after the trap: %s", s)
			}
			// The healthy instance neither noticed nor lost its state.
			if got := mustCall(t, healthy, "echo", "still"); got != healthy.ID().String()+"|still" {
				t.Errorf("healthy instance answered %q", got)
			}
			// The victim answers again, from a fresh module instance.
			if got := callAfterReset(t, victim, "count", ""); got != "1" {
				t.Errorf("count after reset = %s, want 1 (fresh memory)", got)
			}
			if victim.Resets() != 1 || healthy.Resets() != 0 {
				t.Errorf("resets: victim %d, healthy %d", victim.Resets(), healthy.Resets())
			}
		})
	}
	if got := mustCall(t, healthy, "count", ""); got != "3" {
		t.Errorf("healthy count = %s, want 3", got)
	}
}

func TestPanicOutputInLogs(t *testing.T) {
	inst := start(t, runtime.Settings{}, wasm.Spec{})
	_, err := call(testContext(t), inst, "panic", "")
	remoteCode(t, err, spear.CodeInternal)
	logs := strings.Join(inst.Logs(100), "\n")
	if !strings.Contains(logs, "panic: wasm-echo: asked to panic") {
		t.Errorf("logs do not hold the guest's panic:\n%s", logs)
	}
	if got := inst.Logs(1); len(got) != 1 {
		t.Errorf("Logs(1) returned %d lines", len(got))
	}
}

func TestDeadlineResetsInstance(t *testing.T) {
	inst := start(t, runtime.Settings{}, wasm.Spec{})
	mustCall(t, inst, "count", "")
	// The caller would wait a minute; the request's own timeout is 300ms.
	err := request(testContext(t), inst, "loop", 300)
	re := remoteCode(t, err, spear.CodeDeadlineExceeded)
	if !errors.Is(err, spear.ErrTimeout) || !strings.Contains(re.Message, "wasm instance reset") {
		t.Errorf("error %v does not match spear.ErrTimeout or lacks the reset", err)
	}
	// The status turned degraded before the error was sent.
	if err := inst.WaitRunning(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if got := mustCall(t, inst, "count", ""); got != "1" {
		t.Errorf("count after reset = %s, want 1", got)
	}
	if inst.Resets() != 1 {
		t.Errorf("resets = %d", inst.Resets())
	}
}

func TestCallerTimeoutResetsInstance(t *testing.T) {
	inst := start(t, runtime.Settings{}, wasm.Spec{})
	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()
	_, err := call(ctx, inst, "loop", "")
	if !errors.Is(err, spear.ErrTimeout) {
		t.Fatalf("got %v, want an error matching spear.ErrTimeout", err)
	}
	if got := callAfterReset(t, inst, "echo", "back"); got != inst.ID().String()+"|back" {
		t.Errorf("echo after reset = %q", got)
	}
	if inst.Resets() != 1 {
		t.Errorf("resets = %d, want 1", inst.Resets())
	}
}

func TestQueuedRequestExpiresWithoutReset(t *testing.T) {
	inst := start(t, runtime.Settings{}, wasm.Spec{})
	loopCtx, stopLoop := context.WithCancel(testContext(t))
	loopDone := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		loopDone <- request(loopCtx, inst, "loop", 0)
	}()
	<-started
	// Queued behind the loop, this request cannot start; it fails at its
	// deadline, and the instance is not reset for it. (If it overtook the
	// loop it would succeed instead, and the test would fail.)
	var err error
	for {
		err = request(testContext(t), inst, "echo", 200)
		if err != nil {
			break
		}
		// The loop had not reached the instance yet; try again.
	}
	re := remoteCode(t, err, spear.CodeDeadlineExceeded)
	if !strings.Contains(re.Message, "before the wasm instance started") {
		t.Errorf("message %q", re.Message)
	}
	if inst.Resets() != 0 {
		t.Errorf("resets = %d before the loop was cancelled", inst.Resets())
	}
	stopLoop()
	if err := <-loopDone; !errors.Is(err, context.Canceled) {
		t.Errorf("loop: %v", err)
	}
	callAfterReset(t, inst, "echo", "")
	if inst.Resets() != 1 {
		t.Errorf("resets = %d after cancelling the loop, want 1", inst.Resets())
	}
}

func TestMemoryLimit(t *testing.T) {
	const limit = 24 << 20
	inst := start(t, runtime.Settings{}, wasm.Spec{Memory: runtime.Bytes(limit)})
	mustCall(t, inst, "echo", "")
	_, err := call(testContext(t), inst, "alloc", "")
	re := remoteCode(t, err, spear.CodeResourceExhausted)
	if !strings.Contains(re.Message, "out of memory") {
		t.Errorf("message %q", re.Message)
	}
	callAfterReset(t, inst, "echo", "")
}

func TestStopLeavesNothingBehind(t *testing.T) {
	rt := sharedRuntime(t)
	leaks := goleak.IgnoreCurrent()
	ctx := testContext(t)
	id := spear.InstanceID{Runtime: spear.Wasm, Name: "stopped"}
	inst, err := rt.Start(ctx, id, runtime.Settings{}, wasm.Spec{Code: wasmecho.Module})
	if err != nil {
		t.Fatal(err)
	}
	mustCall(t, inst, "echo", "")
	ch := inst.Channel()
	if err := rt.Stop(ctx, inst); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inst.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if info := inst.Info(); info.Status != runtime.StatusStopped || info.Reason == "" {
		t.Errorf("info after stop: %+v", info)
	}
	if _, err := call(ctx, inst, "echo", ""); !errors.Is(err, spear.ErrChannelClosed) {
		t.Errorf("call after stop: %v, want spear.ErrChannelClosed", err)
	}
	if err := ch.WaitConnected(ctx); !errors.Is(err, spear.ErrChannelClosed) {
		t.Errorf("channel after stop: %v", err)
	}
	if err := rt.Stop(ctx, inst); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	goleak.VerifyNone(t, leaks)

	// The id is free again.
	again, err := rt.Start(ctx, id, runtime.Settings{}, wasm.Spec{Code: wasmecho.Module})
	if err != nil {
		t.Fatal(err)
	}
	rt.Stop(ctx, again)
}

func TestStartErrors(t *testing.T) {
	rt := sharedRuntime(t)
	ctx := testContext(t)
	running := start(t, runtime.Settings{}, wasm.Spec{})
	emptyModule := []byte("\x00asm\x01\x00\x00\x00")
	wasmID := spear.InstanceID{Runtime: spear.Wasm, Name: "bad"}
	for _, tc := range []struct {
		name string
		id   spear.InstanceID
		set  runtime.Settings
		spec runtime.Spec
		want error
	}{
		{"process id", spear.InstanceID{Runtime: spear.Process, Name: "p"}, runtime.Settings{}, wasm.Spec{Code: wasmecho.Module}, spear.ErrUnsupportedRuntime},
		{"no module", wasmID, runtime.Settings{}, wasm.Spec{}, spear.ErrInvalidConfig},
		{"another runtime's spec", wasmID, runtime.Settings{}, process.Spec{Command: "x"}, spear.ErrInvalidConfig},
		{"missing file", wasmID, runtime.Settings{}, wasm.Spec{Module: "/nonexistent/x.wasm"}, spear.ErrConfig},
		{"missing built-in module", wasmID, runtime.Settings{}, wasm.Spec{Module: "@nonexistent"}, spear.ErrInvalidConfig},
		{"not wasm", wasmID, runtime.Settings{}, wasm.Spec{Code: []byte("not wasm")}, spear.ErrInvalidConfig},
		{"not a command", wasmID, runtime.Settings{}, wasm.Spec{Code: emptyModule}, spear.ErrInvalidConfig},
		{"memory below the module's minimum", wasmID, runtime.Settings{}, wasm.Spec{Code: wasmecho.Module, Memory: 64 << 10}, spear.ErrInvalidConfig},
		{"tcp channel", wasmID, runtime.Settings{Channel: &channel.Config{Type: channel.TCP}}, wasm.Spec{Code: wasmecho.Module}, spear.ErrUnsupportedChannelType},
		{"negative stop grace", wasmID, runtime.Settings{StopGrace: -1}, wasm.Spec{Code: wasmecho.Module}, spear.ErrInvalidConfig},
		{"duplicate", running.ID(), runtime.Settings{}, wasm.Spec{Code: wasmecho.Module}, runtime.ErrExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst, err := rt.Start(ctx, tc.id, tc.set, tc.spec)
			if !errors.Is(err, tc.want) || inst != nil {
				t.Fatalf("got %v, %v; want an error matching %v", inst, err, tc.want)
			}
			var ie *spear.InstanceError
			if !errors.As(err, &ie) || ie.ID != tc.id {
				t.Errorf("error %v does not name the instance", err)
			}
		})
	}
	// Nothing was left behind by the failures, and the running instance
	// is untouched.
	if _, ok := shared.f.Get(wasmID); ok {
		t.Error("a failed start left a channel behind")
	}
	mustCall(t, running, "echo", "")
}

func TestBuiltInModule(t *testing.T) {
	inst := start(t, runtime.Settings{}, wasm.Spec{Module: "@echo"})
	mustCall(t, inst, "echo", "")
}

// TestStartAfterClose checks that a closed runtime's refusal matches the
// category of every closed runtime.
func TestStartAfterClose(t *testing.T) {
	rt, err := wasm.New(wasm.Options{Factory: sharedFactory(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(testContext(t)); err != nil {
		t.Fatal(err)
	}
	id := spear.InstanceID{Runtime: spear.Wasm, Name: "after-close"}
	_, err = rt.Start(testContext(t), id, runtime.Settings{}, wasm.Spec{Code: exitsAtOnce})
	if !errors.Is(err, runtime.ErrClosed) || !errors.Is(err, spear.ErrChannelClosed) {
		t.Errorf("start after close: %v, want runtime.ErrClosed (a closed channel)", err)
	}
}

func TestDecodeSpec(t *testing.T) {
	if k, ok := runtime.Lookup(spear.Wasm); !ok || k.MaxConcurrency != 1 {
		t.Errorf("wasm kind = %+v, %v; want one with MaxConcurrency 1", k, ok)
	}
	spec := runtimetest.CheckKind(t, spear.Wasm, `{"wasm":"@wasmecho","memory":"32Mi","args":["a"],"env":{"K":"v"}}`, map[string]string{
		`{}`:                             "wasm: required",
		`{"wasm":"x","command":"y"}`:     "command: unknown field",
		`{"wasm":"x","memory":"lots"}`:   `"lots"`,
		`{"wasm":"x","env":{"A=1":"x"}}`: "env: variable name",
	})
	s, err := runtime.SpecAs[wasm.Spec](spec)
	if err != nil || s.Module != "@wasmecho" || s.Memory != 32<<20 || len(s.Args) != 1 || s.Env["K"] != "v" {
		t.Errorf("decoded %+v, %v", s, err)
	}
}

func TestSpecEnvCannotOverrideCredentials(t *testing.T) {
	inst := start(t, runtime.Settings{}, wasm.Spec{Env: runtime.Env{spear.EnvSecret: "00", "OTHER": "1"}})
	mustCall(t, inst, "echo", "")
}

// Two hand-assembled WASI commands whose _start returns at once, or traps.
var (
	exitsAtOnce = []byte("\x00asm\x01\x00\x00\x00" +
		"\x01\x04\x01\x60\x00\x00" + // type: func() -> ()
		"\x03\x02\x01\x00" + // one function of that type
		"\x07\x0a\x01\x06_start\x00\x00" + // exported as _start
		"\x0a\x04\x01\x02\x00\x0b") // body: end
	trapsAtOnce = []byte("\x00asm\x01\x00\x00\x00" +
		"\x01\x04\x01\x60\x00\x00" +
		"\x03\x02\x01\x00" +
		"\x07\x0a\x01\x06_start\x00\x00" +
		"\x0a\x05\x01\x03\x00\x00\x0b") // body: unreachable, end
)

func TestGuestThatEndsBeforeConnecting(t *testing.T) {
	rt := sharedRuntime(t)
	ctx := testContext(t)
	for _, tc := range []struct {
		name string
		code []byte
		want string
	}{
		{"exit", exitsAtOnce, "exited with status 0"},
		{"trap", trapsAtOnce, "unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := spear.InstanceID{Runtime: spear.Wasm, Name: "ends-" + tc.name}
			inst, err := rt.Start(ctx, id, runtime.Settings{}, wasm.Spec{Code: tc.code})
			if !errors.Is(err, spear.ErrConnectionFailed) || inst != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a connection failure saying %q", err, tc.want)
			}
			if _, ok := shared.f.Get(id); ok {
				t.Error("a failed start left a channel behind")
			}
		})
	}
}

// BenchmarkStartFromCache measures starting an instance of an already
// compiled module until it has answered its first request.
func BenchmarkStartFromCache(b *testing.B) {
	rt := sharedRuntime(b)
	ctx := testContext(b)
	warm := start(b, runtime.Settings{}, wasm.Spec{}) // compiles the module
	_ = warm
	b.ResetTimer()
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		id := spear.InstanceID{Runtime: spear.Wasm, Name: fmt.Sprintf("bench-%d", i)}
		inst, err := rt.Start(ctx, id, runtime.Settings{}, wasm.Spec{Code: wasmecho.Module})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := call(ctx, inst, "echo", "x"); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		b.StopTimer()
		rt.Stop(ctx, inst)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/start")
}

// TestRuntimeFreeGuestConnects starts rawguest.Connect, which answers the
// handshake through spear_v1.auth_request and never sees its secret. The
// agent accepted it (Start waits for that), so the proof the host wrote
// was right; the guest then reads the terminate signal without answering,
// and Stop ends it after the grace period.
func TestRuntimeFreeGuestConnects(t *testing.T) {
	rt := sharedRuntime(t)
	ctx := testContext(t)
	id := spear.InstanceID{Runtime: spear.Wasm, Name: fmt.Sprintf("raw-%d", names.Add(1))}
	inst, err := rt.Start(ctx, id, runtime.Settings{StopGrace: 10 * time.Millisecond}, wasm.Spec{Code: rawguest.Connect})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-inst.Channel().Connected():
	default:
		t.Error("Start returned before the channel was connected")
	}
	if st := inst.Info().Status; st != runtime.StatusRunning {
		t.Errorf("after Start: status %s, want running", st)
	}
	if err := rt.Stop(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if st := inst.Info().Status; st != runtime.StatusStopped {
		t.Errorf("after Stop: status %s", st)
	}
}

// TestHostCallMisuse: a guest that hands spear_v1.auth_request a buffer
// outside its memory fails its Start with an error that says so; the
// runtime goes on starting other instances.
func TestHostCallMisuse(t *testing.T) {
	rt := sharedRuntime(t)
	ctx := testContext(t)
	id := spear.InstanceID{Runtime: spear.Wasm, Name: "raw-misuse"}
	inst, err := rt.Start(ctx, id, runtime.Settings{}, wasm.Spec{Code: rawguest.BadOutput})
	want := "spear_v1.auth_request: out [1048576, +"
	if !errors.Is(err, spear.ErrConnectionFailed) || inst != nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want a connection failure saying %q", err, want)
	}
	if _, ok := shared.f.Get(id); ok {
		t.Error("a failed start left a channel behind")
	}
	mustCall(t, start(t, runtime.Settings{}, wasm.Spec{}), "echo", "")
}

func TestHostImportChecked(t *testing.T) {
	rt := sharedRuntime(t)
	ctx := testContext(t)
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"unknown function", "auth_request", "auth_requesx", "spear_v1.auth_requesx, which does not exist"},
		{"unknown module", "spear_v1", "spear_v9", "imports spear_v9.auth_request; only wasi_snapshot_preview1 and spear_v1 are provided"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code := bytes.Replace(rawguest.Connect, []byte(tc.from), []byte(tc.to), 1)
			id := spear.InstanceID{Runtime: spear.Wasm, Name: "raw-import"}
			_, err := rt.Start(ctx, id, runtime.Settings{}, wasm.Spec{Code: code})
			if !errors.Is(err, spear.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an invalid config saying %q", err, tc.want)
			}
		})
	}
}
