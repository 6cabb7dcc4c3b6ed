package agent

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime"
)

func invoke(t *testing.T, a *Agent, method, payload string) (Result, error) {
	t.Helper()
	return a.Invoke(testCtx(t), Invocation{Function: "fn", Method: method, Payload: []byte(payload)})
}

func TestInvokeStartsInstanceOnDemand(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(nil))
	res, err := invoke(t, a, "", "hi")
	if err != nil {
		t.Fatal(err)
	}
	if res.Instance.Runtime != spear.Process || !strings.HasPrefix(res.Instance.Name, "fn-") || res.Instance.Validate() != nil {
		t.Errorf("instance id %v: want a valid process:fn-... id", res.Instance)
	}
	if got, want := string(res.Payload), res.Instance.String()+"|hi"; got != want {
		t.Errorf("payload = %q, want %q", got, want)
	}
	// A second invocation reuses the idle instance.
	res2, err := invoke(t, a, "", "again")
	if err != nil || res2.Instance != res.Instance || rt.starts.Load() != 1 {
		t.Errorf("second invocation on %v (err %v) after %d starts; want %v and 1 start", res2.Instance, err, rt.starts.Load(), res.Instance)
	}
}

// An instance whose name another agent's instance has (in a shared
// Kubernetes namespace) is started again under a new name, a few times.
func TestStartRetriesTakenName(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(nil))
	rt.takenStarts.Store(nameTries - 1)
	if _, err := invoke(t, a, "", "hi"); err != nil || rt.starts.Load() != nameTries {
		t.Errorf("invoke after %d taken names: %v, %d starts; want success on start %d", nameTries-1, err, rt.starts.Load(), nameTries)
	}

	a, rt = newTestAgent(t, testConfig(nil))
	rt.takenStarts.Store(nameTries)
	if _, err := invoke(t, a, "", "hi"); !errors.Is(err, ErrNoInstance) || !errors.Is(err, spear.ErrInvalidInstanceID) || rt.starts.Load() != nameTries {
		t.Errorf("invoke with every name taken: %v after %d starts; want ErrNoInstance after %d", err, rt.starts.Load(), nameTries)
	}
}

func TestMinInstancesStartWithAgent(t *testing.T) {
	a, _ := newTestAgent(t, testConfig(func(f *FunctionConfig) { f.MinInstances = 2 }))
	eventually(t, "2 running instances", func() bool {
		list, _ := a.Instances("fn")
		n := 0
		for _, in := range list {
			if in.Status == string(runtime.StatusRunning) {
				n++
			}
		}
		return n == 2
	})
}

// TestBalancing runs blocked invocations and checks where they land: the
// least loaded instance first, new instances up to max_instances, then
// waiting for capacity.
func TestBalancing(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.MaxInstances = 2
		f.MaxConcurrency = 2
	}))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		answers = map[string]int{}
		errs    []error
	)
	call := func() {
		defer wg.Done()
		res, err := invoke(t, a, "wait", "")
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		answers[string(res.Payload)]++
	}
	// Four invocations fill both instances (2 x max_concurrency 2).
	for range 4 {
		wg.Add(1)
		go call()
	}
	eventually(t, "4 invocations in flight", func() bool {
		n := 0
		for _, f := range a.Functions() {
			n += f.InFlight
		}
		return n == 4
	})
	if got := rt.starts.Load(); got != 2 {
		t.Errorf("%d starts, want max_instances 2", got)
	}
	list, _ := a.Instances("fn")
	for _, in := range list {
		if in.InFlight != 2 {
			t.Errorf("instance %s has %d in flight; want 2 on each (least loaded first)", in.ID, in.InFlight)
		}
	}
	// A fifth cannot be placed before its deadline.
	_, err := a.Invoke(testCtx(t), Invocation{Function: "fn", Method: "wait", Timeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrNoInstance) || HTTPStatus(err) != http.StatusServiceUnavailable || GRPCCode(err) != codes.Unavailable {
		t.Errorf("fifth invocation: err = %v, want ErrNoInstance (503, Unavailable)", err)
	}
	// A sixth waits for capacity and gets it once the gate opens.
	wg.Add(1)
	go call()
	eventually(t, "the sixth invocation admitted", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.active == 5
	})
	close(rt.gate)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("invocations failed: %v", errs)
	}
	total := 0
	for _, n := range answers {
		total += n
	}
	if len(answers) != 2 || total != 5 || rt.starts.Load() != 2 {
		t.Errorf("answers by instance %v after %d starts; want 5 answers from 2 instances", answers, rt.starts.Load())
	}
}

func TestRestartOnFailure(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(func(f *FunctionConfig) { f.MinInstances = 1 }))
	first, err := invoke(t, a, "", "x")
	if err != nil {
		t.Fatal(err)
	}
	// An invocation in flight when the instance dies fails at once.
	failed := make(chan error, 1)
	go func() {
		_, err := invoke(t, a, "wait", "")
		failed <- err
	}()
	eventually(t, "invocation in flight", func() bool { return a.Functions()[0].InFlight == 1 })
	rt.crash(t, first.Instance)
	err = <-failed
	if err == nil || HTTPStatus(err) != http.StatusBadGateway || ErrorCode(err) != "instance_failed" {
		t.Errorf("invocation on a crashed instance: err = %v (status %d), want instance_failed (502)", err, HTTPStatus(err))
	}
	eventually(t, "a replacement instance running", func() bool {
		list, _ := a.Instances("fn")
		var oldStopped, newRunning bool
		for _, in := range list {
			oldStopped = oldStopped || in.ID == first.Instance.String() && in.Status == "stopped" && in.Reason == "killed"
			newRunning = newRunning || in.ID != first.Instance.String() && in.Status == "running"
		}
		return oldStopped && newRunning
	})
	res, err := invoke(t, a, "", "x")
	if err != nil || res.Instance == first.Instance {
		t.Errorf("after restart: answered by %v, err %v; want the new instance", res.Instance, err)
	}
	if got := counterValue(t, a.met.restarts.WithLabelValues("fn")); got != 1 {
		t.Errorf("restarts metric = %v, want 1", got)
	}
}

func TestRestartNever(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.MinInstances = 1
		f.Restart.Policy = RestartNever
	}))
	first, err := invoke(t, a, "", "x")
	if err != nil {
		t.Fatal(err)
	}
	rt.crash(t, first.Instance)
	p := a.function("fn").pool
	eventually(t, "the crashed instance removed", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.members) == 0
	})
	p.mu.Lock()
	pending := p.starting
	p.mu.Unlock()
	if pending != 0 || rt.starts.Load() != 1 {
		t.Errorf("after a crash under restart never: %d starts pending, %d starts; want none again", pending, rt.starts.Load())
	}
	// Invocations still start instances on demand.
	if res, err := invoke(t, a, "", "x"); err != nil || res.Instance == first.Instance {
		t.Errorf("invocation after the crash: %v, %v", res.Instance, err)
	}
}

func TestStartFailureIsNoInstance(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(nil))
	rt.failStarts.Store(1)
	_, err := invoke(t, a, "", "x")
	if !errors.Is(err, ErrNoInstance) || !strings.Contains(err.Error(), "fake start failure") {
		t.Errorf("err = %v, want ErrNoInstance with the start's cause", err)
	}
	if _, err := invoke(t, a, "", "x"); err != nil {
		t.Errorf("next invocation: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	cfg := RestartConfig{InitialBackoff: Duration(time.Second), MaxBackoff: Duration(5 * time.Second)}
	var got []time.Duration
	for n := range 5 {
		got = append(got, backoff(cfg, n))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("backoffs = %v, want %v", got, want)
		}
	}
}

func TestInvokeErrors(t *testing.T) {
	cfg := testConfig(nil)
	cfg.MaxPayload = 10
	a, _ := newTestAgent(t, cfg)
	tests := []struct {
		name   string
		inv    Invocation
		target error
		status int
	}{
		{"unknown function", Invocation{Function: "nope"}, ErrUnknownFunction, 404},
		{"payload too large", Invocation{Function: "fn", Payload: make([]byte, 11)}, ErrPayloadTooLarge, 413},
		{"negative timeout", Invocation{Function: "fn", Timeout: -1}, ErrBadRequest, 400},
		{"function fails", Invocation{Function: "fn", Method: "fail", Payload: []byte("boom")}, nil, 500},
		{"no such method", Invocation{Function: "fn", Method: "nope"}, nil, 404},
		{"deadline", Invocation{Function: "fn", Method: "wait", Timeout: 100 * time.Millisecond}, spear.ErrTimeout, 504},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Invoke(testCtx(t), tt.inv)
			if err == nil || (tt.target != nil && !errors.Is(err, tt.target)) || HTTPStatus(err) != tt.status {
				t.Errorf("err = %v (status %d), want %v (status %d)", err, HTTPStatus(err), tt.target, tt.status)
			}
		})
	}
	if got := counterValue(t, a.met.invocations.WithLabelValues("fn", "error")); got != 2 {
		t.Errorf(`invocations{outcome="error"} = %v, want 2`, got)
	}
	if got := counterValue(t, a.met.invocations.WithLabelValues("fn", "timeout")); got != 1 {
		t.Errorf(`invocations{outcome="timeout"} = %v, want 1`, got)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   codes.Code
	}{
		{ErrUnknownInstance, 404, codes.NotFound},
		{spear.ErrInvalidInstanceID, 400, codes.InvalidArgument},
		{ErrPoolFull, 409, codes.ResourceExhausted},
		{ErrShuttingDown, 503, codes.Unavailable},
		{errors.Join(ErrNoInstance, spear.ErrTimeout), 503, codes.Unavailable},
		{&spear.RemoteError{Code: spear.CodeDeadlineExceeded}, 504, codes.DeadlineExceeded},
		{&spear.RemoteError{Code: spear.CodeUnavailable}, 503, codes.Unavailable},
		{&spear.RemoteError{Code: spear.CodeResourceExhausted}, 429, codes.ResourceExhausted},
		{&spear.RemoteError{Code: spear.CodeInternal}, 500, codes.Internal},
		{spear.ErrPeerGone, 502, codes.Unavailable},
		{context.DeadlineExceeded, 504, codes.DeadlineExceeded},
		{errors.New("other"), 500, codes.Internal},
	}
	for _, tt := range tests {
		if s, c := HTTPStatus(tt.err), GRPCCode(tt.err); s != tt.status || c != tt.code {
			t.Errorf("%v: %d %v, want %d %v", tt.err, s, c, tt.status, tt.code)
		}
	}
}

func TestCreateAndDeleteInstance(t *testing.T) {
	a, _ := newTestAgent(t, testConfig(func(f *FunctionConfig) { f.MaxInstances = 1 }))
	ctx := testCtx(t)
	in, err := a.CreateInstance(ctx, "fn")
	if err != nil || in.Status != "running" || in.Function != "fn" {
		t.Fatalf("CreateInstance = %+v, %v", in, err)
	}
	if _, err := a.CreateInstance(ctx, "fn"); !errors.Is(err, ErrPoolFull) {
		t.Errorf("second CreateInstance: err = %v, want ErrPoolFull", err)
	}
	if _, err := a.CreateInstance(ctx, "nope"); !errors.Is(err, ErrUnknownFunction) {
		t.Errorf("CreateInstance(nope): err = %v", err)
	}
	if lines, err := a.Logs(in.ID, 5); err != nil || len(lines) != 1 {
		t.Errorf("Logs = %v, %v", lines, err)
	}
	if err := a.DeleteInstance(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted instance listed as stopped", func() bool {
		list, _ := a.Instances("fn")
		return len(list) == 1 && list[0].Status == "stopped" && list[0].Reason == "stopped"
	})
	if err := a.DeleteInstance(ctx, "process:missing"); !errors.Is(err, ErrUnknownInstance) {
		t.Errorf("DeleteInstance(missing): err = %v", err)
	}
	if err := a.DeleteInstance(ctx, "not an id"); HTTPStatus(err) != 400 {
		t.Errorf("DeleteInstance(bad id): err = %v, want a 400", err)
	}
}

func TestDrain(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(nil))
	done := make(chan error, 1)
	go func() {
		_, err := invoke(t, a, "wait", "")
		done <- err
	}()
	eventually(t, "invocation in flight", func() bool { return a.Functions()[0].InFlight == 1 })
	drained := make(chan error, 1)
	go func() { drained <- a.Drain(testCtx(t)) }()
	eventually(t, "draining", a.Draining)
	if _, err := invoke(t, a, "", "x"); !errors.Is(err, ErrShuttingDown) || HTTPStatus(err) != 503 {
		t.Errorf("invocation while draining: err = %v, want ErrShuttingDown (503)", err)
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v with an invocation in flight", err)
	default:
	}
	close(rt.gate)
	if err := <-done; err != nil {
		t.Errorf("in-flight invocation: %v, want it to finish", err)
	}
	if err := <-drained; err != nil {
		t.Errorf("Drain: %v", err)
	}
}

func TestDrainDeadline(t *testing.T) {
	a, _ := newTestAgent(t, testConfig(nil))
	go func() { _, _ = invoke(t, a, "wait", "") }()
	eventually(t, "invocation in flight", func() bool { return a.Functions()[0].InFlight == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Drain(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Drain with an ended context: %v", err)
	}
	// Close stops the instance, ending the invocation (Cleanup checks it).
}

// TestFunctionsRoutedByRuntime checks that a function's instances come
// from its runtime, started with its spec.
func TestFunctionsRoutedByRuntime(t *testing.T) {
	f := newTestFactory(t)
	proc := newFakeRuntime(t, spear.Process, f)
	other := newFakeRuntime(t, fakeType, f)
	cfg, err := ParseConfig([]byte(`
functions:
  - {name: local, runtime: process, command: x}
  - {name: remote, runtime: agent-fake, image: example/fn:1, min_instances: 0}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{Runtimes: []runtime.Runtime{proc, other}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(testCtx(t))
	res, err := a.Invoke(testCtx(t), Invocation{Function: "remote", Payload: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Instance.Runtime != fakeType || other.starts.Load() != 1 || proc.starts.Load() != 0 {
		t.Errorf("answered by %v; starts: agent-fake %d, process %d", res.Instance, other.starts.Load(), proc.starts.Load())
	}
	other.mu.Lock()
	spec := other.lastSpec
	other.mu.Unlock()
	if spec != (fakeSpec{Image: "example/fn:1"}) {
		t.Errorf("started with spec %#v", spec)
	}
	if got := a.Functions()[1].MaxConcurrency; got != 2 {
		t.Errorf("max_concurrency = %d, want the kind's default 2", got)
	}
}

func TestMissingRuntime(t *testing.T) {
	cfg := Config{Functions: []FunctionConfig{{Name: "w", Runtime: "agent-fake", Spec: fakeSpec{Image: "x"}}}}
	_, err := New(cfg, Options{})
	if !errors.Is(err, spear.ErrUnsupportedRuntime) {
		t.Errorf("err = %v, want spear.ErrUnsupportedRuntime", err)
	}
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestRetryUnavailable(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(nil))
	if res, err := invoke(t, a, "flaky", ""); err != nil || string(res.Payload) != "ok" || rt.flaky.Load() != 2 {
		t.Errorf("flaky: %q, %v after %d calls; want ok after a retry", res.Payload, err, rt.flaky.Load())
	}
	_, err := invoke(t, a, "unavailable", "")
	if HTTPStatus(err) != 503 || ErrorCode(err) != "function_unavailable" {
		t.Errorf("always unavailable: %v, want function_unavailable (503)", err)
	}
}
