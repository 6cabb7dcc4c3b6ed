package process_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// testTimeout bounds every wait: generous for a loaded machine, never
// expected to be reached.
const testTimeout = 30 * time.Second

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// syncBuffer is a log destination the test can read while handlers write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// records returns the log records (lines) that contain every one of subs.
func (s *syncBuffer) records(subs ...string) []string {
	var out []string
	for _, l := range strings.Split(s.String(), "\n") {
		if !slices.ContainsFunc(subs, func(sub string) bool { return !strings.Contains(l, sub) }) {
			out = append(out, l)
		}
	}
	return out
}

// env is a factory and a process runtime, closed when the test ends, whose
// logs go to logs.
type env struct {
	f    *channel.Factory
	rt   *process.Runtime
	logs *syncBuffer
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	return newEnvWith(tb, process.Options{})
}

// newEnvWith is newEnv with opts, whose Factory and Logger it sets.
func newEnvWith(tb testing.TB, opts process.Options) *env {
	tb.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f, err := channel.NewFactory(channel.Options{Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	opts.Factory, opts.Logger = f, log
	rt, err := process.New(opts)
	if err != nil {
		f.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := rt.Close(testCtx(tb)); err != nil {
			tb.Errorf("close runtime: %v", err)
		}
		f.Close()
	})
	return &env{f: f, rt: rt, logs: logs}
}

var nextID atomic.Int64

// newID returns a fresh process instance id.
func newID() spear.InstanceID {
	return spear.InstanceID{Runtime: spear.Process, Name: fmt.Sprintf("t%d", nextID.Add(1))}
}

// childSpec runs this test binary as a child in the given mode. Under the
// race detector, the child would sleep a second before exiting
// (atexit_sleep_ms); it need not.
func childSpec(mode string, env ...string) child {
	c := child{
		Settings: runtime.Settings{Function: "test-" + mode},
		Spec: process.Spec{
			Command: os.Args[0],
			Args:    []string{"-test.run=^$"},
			Env:     runtime.Env{childEnv: mode, "GORACE": "atexit_sleep_ms=0"},
		},
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		c.Env[k] = v
	}
	return c
}

// child is what Start takes, in one value for the tests to adjust.
type child struct {
	runtime.Settings
	process.Spec
}

// start starts c as id.
func (c child) start(ctx context.Context, rt *process.Runtime, id spear.InstanceID) (runtime.Instance, error) {
	return rt.Start(ctx, id, c.Settings, c.Spec)
}

// start starts an instance and fails the test if it does not run.
func (e *env) start(tb testing.TB, spec child) *process.Instance {
	tb.Helper()
	inst, err := spec.start(testCtx(tb), e.rt, newID())
	if err != nil {
		tb.Fatal(err)
	}
	return inst.(*process.Instance)
}

// echo runs the default method and checks the answer.
func echo(tb testing.TB, inst runtime.Instance, payload string) {
	tb.Helper()
	out, err := channel.Execute(testCtx(tb), inst.Channel(), channel.Invocation{Payload: []byte(payload)})
	if err != nil {
		tb.Fatal(err)
	}
	if want := inst.ID().String() + "|" + payload; string(out) != want {
		tb.Fatalf("got %q, want %q", out, want)
	}
}

// waitDone waits until the instance is gone.
func waitDone(tb testing.TB, inst runtime.Instance) {
	tb.Helper()
	select {
	case <-inst.Done():
	case <-testCtx(tb).Done():
		tb.Fatalf("instance %s never ended; info %+v", inst.ID(), inst.Info())
	}
}

// checkReaped checks that the process pid no longer exists. The runtime
// reaps its children itself, so there is no zombie to wait for.
func checkReaped(tb testing.TB, pid int) {
	tb.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		tb.Errorf("process %d still exists after the instance ended (kill 0: %v)", pid, err)
	}
}

// waitProcessGone waits until pid, which is not our child, has died: it is
// missing or a zombie waiting for its new parent.
func waitProcessGone(tb testing.TB, pid int) {
	tb.Helper()
	ctx := testCtx(tb)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("process %d still alive: %s", pid, b)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestNewRequiresFactory(t *testing.T) {
	if _, err := process.New(process.Options{}); !errors.Is(err, spear.ErrInvalidConfig) {
		t.Fatalf("New without a factory: %v, want ErrInvalidConfig", err)
	}
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, childSpec("echo"))
	if inst.Channel().InstanceID() != inst.ID() {
		t.Errorf("channel belongs to %s, instance is %s", inst.Channel().InstanceID(), inst.ID())
	}
	info := inst.Info()
	if info.Status != runtime.StatusRunning || info.PID <= 0 || info.Function != "test-echo" ||
		info.Created.IsZero() || info.LastHealthCheck.IsZero() {
		t.Fatalf("info after start: %+v", info)
	}
	echo(t, inst, "hello")

	// The id is taken while the instance lives.
	if _, err := childSpec("echo").start(testCtx(t), e.rt, inst.ID()); !errors.Is(err, runtime.ErrExists) || !errors.Is(err, spear.ErrInvalidInstanceID) {
		t.Errorf("second start of %s: %v, want runtime.ErrExists (an invalid id)", inst.ID(), err)
	}

	if err := e.rt.Stop(testCtx(t), inst); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inst.Done():
	default:
		t.Fatal("Stop returned before Done closed")
	}
	info = inst.Info()
	if info.Status != runtime.StatusStopped || info.Reason != "stopped" {
		t.Errorf("info after stop: %+v", info)
	}
	// The SDK child answers the terminate signal by exiting cleanly.
	if st := inst.ExitState(); st == nil || !st.Success() {
		t.Errorf("exit state %v, want a clean exit", st)
	}
	checkReaped(t, info.PID)
	if _, ok := e.f.Get(inst.ID()); ok {
		t.Error("the factory still has the stopped instance's channel")
	}
	_, err := channel.Execute(testCtx(t), inst.Channel(), channel.Invocation{Payload: []byte("late")})
	if !errors.Is(err, spear.ErrChannelClosed) {
		t.Errorf("execute after stop: %v, want ErrChannelClosed", err)
	}
	if err := e.rt.Stop(testCtx(t), inst); err != nil {
		t.Errorf("second stop: %v", err)
	}
	// The id is free again.
	again, err := childSpec("echo").start(testCtx(t), e.rt, inst.ID())
	if err != nil {
		t.Fatalf("restart under the same id: %v", err)
	}
	echo(t, again, "again")
}

// TestOnlyTheChildConnects: a process that is not in the instance's
// process group cannot take its place, even holding its secret.
func TestOnlyTheChildConnects(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, childSpec("echo"))
	cr := inst.Channel().Credentials()
	if cr.Type != channel.Unix {
		t.Fatalf("channel type %s, want unix", cr.Type)
	}
	conn, err := transport.Dial(testCtx(t), string(cr.Type), cr.Address, transport.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := auth.Connect(testCtx(t), conn, cr.ID, cr.Secret); !errors.Is(err, spear.ErrAuthFailed) {
		t.Fatalf("handshake from outside the group: %v, want spear.ErrAuthFailed", err)
	}
	echo(t, inst, "still mine")
}

// TestStartRefusesAnIDWithAChannel: an id whose channel someone else made
// is not started, and that channel, and its secret, are left alone.
func TestStartRefusesAnIDWithAChannel(t *testing.T) {
	e := newEnv(t)
	id := newID()
	foreign, err := e.f.Create(testCtx(t), id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := childSpec("echo").start(testCtx(t), e.rt, id); !errors.Is(err, channel.ErrExists) || !errors.Is(err, spear.ErrInvalidInstanceID) {
		t.Fatalf("start: %v, want channel.ErrExists", err)
	}
	if ch, ok := e.f.Get(id); !ok || ch != foreign {
		t.Fatal("the failed start touched the channel it did not make")
	}
}

func TestOutputCaptured(t *testing.T) {
	e := newEnv(t)
	// Junk on stdout before the handshake must not disturb it.
	inst := e.start(t, childSpec("junk"))
	echo(t, inst, "p1")
	secret := hex.EncodeToString(inst.Channel().Credentials().Secret)
	if err := e.rt.Stop(testCtx(t), inst); err != nil {
		t.Fatal(err)
	}

	// After Done, the output is drained.
	lines := inst.Logs(1000)
	wantOut := append(slices.Clone(junkOut), "x", "after-long-line", "handled p1")
	if !inOrder(lines, wantOut, func(l, want string) bool {
		if want == "x" { // the long line, cut short
			return strings.HasPrefix(l, "xxxx") && strings.HasSuffix(l, "[truncated]") && len(l) < longLineLen
		}
		return l == want
	}) {
		t.Errorf("stdout lines %q not in order in Logs:\n%q", wantOut, lines)
	}
	if !inOrder(lines, junkErr, func(l, want string) bool { return l == want }) {
		t.Errorf("stderr lines %q not in order in Logs:\n%q", junkErr, lines)
	}
	if got := inst.Logs(2); !slices.Equal(got, lines[len(lines)-2:]) {
		t.Errorf("Logs(2) = %q, want the last two of %q", got, lines)
	}
	if got := inst.Logs(0); len(got) != 0 {
		t.Errorf("Logs(0) = %q", got)
	}

	id := "instance=" + inst.ID().String()
	if len(e.logs.records(id, "stream=stdout", "junk-out-1")) != 1 {
		t.Errorf("no agent log record of stdout line junk-out-1 with %s", id)
	}
	if len(e.logs.records(id, "stream=stderr", "junk-err-2")) != 1 {
		t.Errorf("no agent log record of stderr line junk-err-2 with %s", id)
	}
	if strings.Contains(e.logs.String(), secret) {
		t.Error("the agent log holds the instance's secret")
	}
}

// inOrder reports whether want appears in lines as a subsequence, matched
// by match.
func inOrder(lines, want []string, match func(line, want string) bool) bool {
	k := 0
	for _, l := range lines {
		if k < len(want) && match(l, want[k]) {
			k++
		}
	}
	return k == len(want)
}

func TestOutputRingKeepsLatest(t *testing.T) {
	e := newEnv(t)
	rt, err := process.New(process.Options{Factory: e.f, LogLines: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(testCtx(t))
	inst, err := childSpec("junk").start(testCtx(t), rt, newID())
	if err != nil {
		t.Fatal(err)
	}
	echo(t, inst, "p1")
	if err := rt.Stop(testCtx(t), inst); err != nil {
		t.Fatal(err)
	}
	// The last stdout line is "handled p1"; stderr lines may interleave
	// anywhere, and the SDK writes nothing.
	lines := inst.Logs(10)
	if len(lines) != 3 || !slices.Contains(lines, "handled p1") {
		t.Errorf("Logs(10) with LogLines 3 = %q, want the last 3 lines", lines)
	}
}

func TestEarlyExit(t *testing.T) {
	e := newEnv(t)
	id := newID()
	_, err := childSpec("exit3").start(testCtx(t), e.rt, id)
	if !errors.Is(err, spear.ErrConnectionFailed) {
		t.Fatalf("start: %v, want ErrConnectionFailed", err)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("start error %v does not carry exit status 3", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "exit status 3") || !strings.Contains(msg, "exit3: giving up") {
		t.Errorf("start error %q lacks the exit status or the last output", msg)
	}
	var ie *spear.InstanceError
	if !errors.As(err, &ie) || ie.ID != id {
		t.Errorf("start error %v does not name the instance", err)
	}
	if _, ok := e.f.Get(id); ok {
		t.Error("a channel is left behind")
	}
	checkReaped(t, startedPID(t, e, id))
}

// startedPID finds the pid the runtime logged for instance id.
func startedPID(t *testing.T, e *env, id spear.InstanceID) int {
	t.Helper()
	recs := e.logs.records("instance="+id.String(), "instance process started")
	if len(recs) != 1 {
		t.Fatalf("no start record for %s in the log", id)
	}
	m := regexp.MustCompile(` pid=(\d+)`).FindStringSubmatch(recs[0])
	if m == nil {
		t.Fatalf("no pid in %q", recs[0])
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

func TestStartTimeout(t *testing.T) {
	e := newEnv(t)
	id := newID()
	spec := childSpec("hang")
	spec.StartTimeout = 300 * time.Millisecond
	_, err := spec.start(testCtx(t), e.rt, id)
	if !errors.Is(err, spear.ErrTimeout) {
		t.Fatalf("start: %v, want ErrTimeout", err)
	}
	if _, ok := e.f.Get(id); ok {
		t.Error("a channel is left behind")
	}
	checkReaped(t, startedPID(t, e, id))
}

func TestStartErrors(t *testing.T) {
	e := newEnv(t)
	missing := childSpec("echo")
	missing.Command = "/nonexistent/spear-test-binary"
	tests := []struct {
		name string
		id   spear.InstanceID
		spec child
		want error
	}{
		{"wrong runtime", spear.InstanceID{Runtime: spear.Wasm, Name: "w"}, childSpec("echo"), spear.ErrUnsupportedRuntime},
		{"no command", newID(), child{}, spear.ErrInvalidConfig},
		{"negative grace", newID(), child{Settings: runtime.Settings{StopGrace: -1}, Spec: process.Spec{Command: "true"}}, spear.ErrInvalidConfig},
		{"missing binary", newID(), missing, spear.ErrInvalidConfig},
		{"bad id", spear.InstanceID{Runtime: spear.Process, Name: "Bad Name"}, childSpec("echo"), spear.ErrInvalidInstanceID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.spec.start(testCtx(t), e.rt, tt.id)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if _, ok := e.f.Get(tt.id); ok {
				t.Error("a channel is left behind")
			}
		})
	}
}

// TestExitDeliversWhatWasWritten: what an instance wrote just before it
// exited reaches the caller; the exit does not race it away.
func TestExitDeliversWhatWasWritten(t *testing.T) {
	e := newEnv(t)
	for range 10 {
		inst := e.start(t, childSpec("echo"))
		st, err := channel.ExecuteStream(testCtx(t), inst.Channel(), channel.Invocation{Method: "last-words"})
		if err != nil {
			t.Fatal(err)
		}
		if chunk, err := st.Recv(); err != nil || !bytes.Equal(chunk, bytes.Repeat([]byte("last words "), lastWordsRepeat)) {
			t.Fatalf("the chunk written before exit: %d bytes, %v", len(chunk), err)
		}
		st.Close()
		<-inst.Done()
	}
}

func TestCrashFailsPendingRequest(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, childSpec("echo"))
	ch := inst.Channel()
	res := make(chan error, 1)
	go func() {
		_, err := channel.Execute(testCtx(t), ch, channel.Invocation{Method: "block"})
		res <- err
	}()
	if m, err := ch.Receive(testCtx(t)); err != nil || string(m.Payload) != "blocked" {
		t.Fatalf("waiting for the request to block: %q %v", m.Payload, err)
	}
	if err := syscall.Kill(inst.Info().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if !errors.Is(err, spear.ErrConnectionFailed) && !errors.Is(err, spear.ErrChannelClosed) {
			t.Errorf("pending request: %v, want ErrConnectionFailed or ErrChannelClosed", err)
		}
		if errors.Is(err, spear.ErrTimeout) {
			t.Errorf("pending request ran into its deadline: %v", err)
		}
	case <-testCtx(t).Done():
		t.Fatal("pending request never failed")
	}
	waitDone(t, inst)
	if info := inst.Info(); info.Status != runtime.StatusStopped || !strings.Contains(info.Reason, "signal: killed") {
		t.Errorf("info after crash: %+v", info)
	}
	if recs := e.logs.records("instance="+inst.ID().String(), "level=WARN", "instance exited"); len(recs) != 1 {
		t.Error("the crash is not logged as a warning")
	}
	checkReaped(t, inst.Info().PID)
}

// grandchildPID finds the pid the child printed for its grandchild.
func grandchildPID(t *testing.T, inst runtime.Instance) int {
	t.Helper()
	for _, l := range inst.Logs(1000) {
		if s, ok := strings.CutPrefix(l, "grandchild "); ok {
			pid, err := strconv.Atoi(s)
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatalf("no grandchild pid in the output %q", inst.Logs(1000))
	return 0
}

func TestStopEscalatesToKillingTheGroup(t *testing.T) {
	e := newEnv(t)
	spec := childSpec("stubborn", grandchildEnv+"=1")
	spec.StopGrace = 100 * time.Millisecond
	inst := e.start(t, spec)
	echo(t, inst, "alive")
	// The grandchild's pid was printed before the child connected; output
	// is read asynchronously, so wait for it.
	waitForLine(t, inst, "grandchild ")
	gpid := grandchildPID(t, inst)

	if err := e.rt.Stop(testCtx(t), inst); err != nil {
		t.Fatal(err)
	}
	st := inst.ExitState()
	ws, _ := st.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("exit state %v, want killed by SIGKILL", st)
	}
	if info := inst.Info(); info.Status != runtime.StatusStopped || info.Reason != "stopped" {
		t.Errorf("info after stop: %+v", info)
	}
	if len(e.logs.records("instance="+inst.ID().String(), "sending SIGKILL")) != 1 {
		t.Error("the escalation to SIGKILL is not logged")
	}
	checkReaped(t, inst.Info().PID)
	waitProcessGone(t, gpid)
}

// waitForLine waits until the instance has written a line starting with
// prefix.
func waitForLine(t *testing.T, inst runtime.Instance, prefix string) {
	t.Helper()
	ctx := testCtx(t)
	for !slices.ContainsFunc(inst.Logs(1000), func(l string) bool { return strings.HasPrefix(l, prefix) }) {
		select {
		case <-ctx.Done():
			t.Fatalf("no line %q in %q", prefix, inst.Logs(1000))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestLeaderExitKillsItsGroup(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, childSpec("grandchild"))
	echo(t, inst, "alive")
	waitForLine(t, inst, "grandchild ")
	gpid := grandchildPID(t, inst)
	// The grandchild holds the child's stdout; it dies with the leader, so
	// the output ends and the instance can finish.
	if err := e.rt.Stop(testCtx(t), inst); err != nil {
		t.Fatal(err)
	}
	if st := inst.ExitState(); !st.Success() {
		t.Errorf("exit state %v, want a clean exit", st)
	}
	waitProcessGone(t, gpid)
}

func TestConcurrentStartsAndClose(t *testing.T) {
	e := newEnv(t)
	const n = 4
	insts := make([]runtime.Instance, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for k := range n {
		wg.Go(func() { insts[k], errs[k] = childSpec("echo").start(testCtx(t), e.rt, newID()) })
	}
	wg.Wait()
	pids := map[int]bool{}
	for k := range n {
		if errs[k] != nil {
			t.Fatal(errs[k])
		}
		echo(t, insts[k], strconv.Itoa(k))
		pids[insts[k].Info().PID] = true
	}
	if len(pids) != n {
		t.Errorf("%d instances share %d pids", n, len(pids))
	}
	if err := e.rt.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	for _, inst := range insts {
		select {
		case <-inst.Done():
		default:
			t.Errorf("instance %s not done after Close", inst.ID())
		}
		if info := inst.Info(); info.Status != runtime.StatusStopped {
			t.Errorf("info after close: %+v", info)
		}
		checkReaped(t, inst.Info().PID)
	}
	if ids := e.f.ActiveInstances(); len(ids) != 0 {
		t.Errorf("channels left after Close: %v", ids)
	}
	if _, err := childSpec("echo").start(testCtx(t), e.rt, newID()); !errors.Is(err, runtime.ErrClosed) || !errors.Is(err, spear.ErrChannelClosed) {
		t.Errorf("start after close: %v, want runtime.ErrClosed (a closed channel)", err)
	}
	if err := e.rt.Close(testCtx(t)); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestStopRejectsForeignInstance(t *testing.T) {
	e := newEnv(t)
	other, err := process.New(process.Options{Factory: e.f})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(testCtx(t))
	inst := e.start(t, childSpec("echo"))
	if err := other.Stop(testCtx(t), inst); err == nil {
		t.Fatal("another runtime stopped the instance")
	}
	if inst.Info().Status != runtime.StatusRunning {
		t.Errorf("instance disturbed by a foreign Stop: %+v", inst.Info())
	}
}

// waitStatus waits until the instance reports status.
func waitStatus(t *testing.T, inst runtime.Instance, status runtime.Status) runtime.Info {
	t.Helper()
	ctx := testCtx(t)
	for {
		info := inst.Info()
		if info.Status == status {
			return info
		}
		select {
		case <-ctx.Done():
			t.Fatalf("instance never %s; info %+v", status, info)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestDisconnectMakesUnhealthyUntilReconnect(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, childSpec("flaky"))
	echo(t, inst, "before")
	started := inst.Info().LastHealthCheck
	if err := inst.Channel().Send(testCtx(t), channel.Message{Type: wire.TypeMessage, Payload: []byte("drop")}); err != nil {
		t.Fatal(err)
	}
	info := waitStatus(t, inst, runtime.StatusUnhealthy)
	if info.Reason == "" {
		t.Error("unhealthy without a reason")
	}
	if err := syscall.Kill(info.PID, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	info = waitStatus(t, inst, runtime.StatusRunning)
	if info.Reason != "" || !info.LastHealthCheck.After(started) {
		t.Errorf("info after reconnecting: %+v (health check at start %v)", info, started)
	}
	echo(t, inst, "after")
}

func TestHeartbeatsAdvanceHealthCheck(t *testing.T) {
	e := newEnv(t)
	spec := childSpec("echo")
	spec.Channel = &channel.Config{HeartbeatInterval: 20 * time.Millisecond}
	inst := e.start(t, spec)
	first := inst.Info().LastHealthCheck
	ctx := testCtx(t)
	// No requests: only heartbeats can move it.
	for !inst.Info().LastHealthCheck.After(first) {
		select {
		case <-ctx.Done():
			t.Fatalf("LastHealthCheck stuck at %v", first)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestCloseAbortsStart(t *testing.T) {
	e := newEnv(t)
	id := newID()
	spec := childSpec("hang")
	spec.StartTimeout = testTimeout
	res := make(chan error, 1)
	go func() {
		_, err := spec.start(testCtx(t), e.rt, id)
		res <- err
	}()
	// Close once the process runs, so that the start is really in flight.
	ctx := testCtx(t)
	for len(e.logs.records("instance="+id.String(), "instance process started")) == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the process never started")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := e.rt.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if !errors.Is(err, runtime.ErrClosed) {
			t.Errorf("start during close: %v, want runtime.ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("Start did not return after Close")
	}
	checkReaped(t, startedPID(t, e, id))
}

func TestStopOutlivesItsContext(t *testing.T) {
	e := newEnv(t)
	spec := childSpec("stubborn")
	spec.StopGrace = 50 * time.Millisecond
	inst := e.start(t, spec)
	expired, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	if err := e.rt.Stop(expired, inst); !errors.Is(err, spear.ErrTimeout) {
		t.Fatalf("stop with an expired context: %v, want ErrTimeout", err)
	}
	// Stopping goes on; a second Stop waits for it.
	if err := e.rt.Stop(testCtx(t), inst); err != nil {
		t.Fatal(err)
	}
	if info := inst.Info(); info.Status != runtime.StatusStopped || info.Reason != "stopped" {
		t.Errorf("info after stop: %+v", info)
	}
}
