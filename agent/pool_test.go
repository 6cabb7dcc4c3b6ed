package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/agent/balancer"
)

// invokeWork runs method "work" and returns who answered.
func invokeWork(t *testing.T, a *Agent, key string) (spear.InstanceID, error) {
	t.Helper()
	res, err := a.Invoke(testCtx(t), Invocation{Function: "fn", Method: "work", Key: key})
	return res.Instance, err
}

// A function whose starts keep failing goes into crash-loop back-off: an
// invocation then fails at once, without a start and without waiting
// for its timeout, with the last start error; functions shows the state,
// the error and the next retry; HTTP answers 503 with Retry-After.
func TestCrashLoopFailsFast(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.Restart = RestartConfig{InitialBackoff: Duration(time.Hour), MaxBackoff: Duration(time.Hour)}
	}))
	rt.failStarts.Store(1000)
	for i := range crashLoopAfter {
		if _, err := invoke(t, a, "", "x"); !errors.Is(err, ErrNoInstance) {
			t.Fatalf("invocation %d: err = %v, want ErrNoInstance", i, err)
		}
	}
	starts := rt.starts.Load()
	// A timeout of an hour: only failing fast lets this return.
	_, err := a.Invoke(context.Background(), Invocation{Function: "fn", Timeout: time.Hour})
	var cl *CrashLoopError
	if !errors.As(err, &cl) || !errors.Is(err, ErrNoInstance) || !strings.Contains(err.Error(), "fake start failure") {
		t.Fatalf("err = %v, want a CrashLoopError with the last start error", err)
	}
	if rt.starts.Load() != starts {
		t.Fatalf("%d more starts during the back-off", rt.starts.Load()-starts)
	}
	f := a.Functions()[0]
	if f.Health != HealthCrashLooping || !strings.Contains(f.LastError, "fake start failure") || f.NextRetry.IsZero() || f.FailedStarts != crashLoopAfter {
		t.Fatalf("functions shows %+v, want it crash-looping, with the last error and next retry", f)
	}
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/functions/fn/invoke", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "crash-loop") {
		t.Fatalf("HTTP: %d, Retry-After %q, %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
}

// Past max_queue waiting invocations, the next is refused at once with
// ErrQueueFull: 429 with Retry-After over HTTP.
func TestQueueFull(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.MaxInstances, f.MaxConcurrency, f.MaxQueue = 1, 1, 2
	}))
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() { _, _ = invoke(t, a, "wait", "") })
	eventually(t, "one running", func() bool { return mustStatus(t, a).InFlight == 1 })
	for range 2 {
		wg.Go(func() { _, _ = invoke(t, a, "wait", "") })
	}
	eventually(t, "two queued", func() bool { return mustStatus(t, a).Queued == 2 })
	_, err := invoke(t, a, "wait", "")
	if !errors.Is(err, ErrQueueFull) || RetryAfter(err) <= 0 {
		t.Fatalf("err = %v, want ErrQueueFull with a retry delay", err)
	}
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/functions/fn/invoke?method=wait", nil))
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("HTTP: %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	close(rt.gate)
}

// An instance that stopped unasked is replaced after a back-off, but the
// back-off never delays serving: the next invocation starts an instance
// at once.
func TestRestartBackoffDoesNotDelayServing(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.MinInstances = 1
		f.Restart = RestartConfig{InitialBackoff: Duration(time.Hour), MaxBackoff: Duration(time.Hour)}
	}))
	first, err := invoke(t, a, "", "x")
	if err != nil {
		t.Fatal(err)
	}
	rt.crash(t, first.Instance)
	eventually(t, "the crash seen", func() bool {
		st, _ := a.PoolStatus("fn")
		return st.Live == 0 && st.RestartsOwed == 1
	})
	// The replacement is an hour away; this invocation's timeout is not.
	res, err := a.Invoke(testCtx(t), Invocation{Function: "fn", Timeout: testTimeout})
	if err != nil || res.Instance == first.Instance {
		t.Fatalf("after the crash: %v, %v; want a fresh instance", res.Instance, err)
	}
	if st, _ := a.PoolStatus("fn"); st.RestartsOwed != 0 {
		t.Fatalf("%d restarts still owed after the on-demand start took the place", st.RestartsOwed)
	}
}

// Outlier ejection: an instance that starts failing stops getting traffic
// after consecutive_errors failures, comes back on probation once its
// ejection ends, and is trusted again after its probation.
func TestOutlierEjectionAndRecovery(t *testing.T) {
	const n = 3
	a, rt := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.MinInstances, f.MaxInstances = 3, 3
		f.Balancer = string(balancer.RoundRobin)
		f.Outlier = OutlierConfig{ConsecutiveErrors: n, BaseEjection: Duration(time.Second), Probation: 2}
	}))
	eventually(t, "three instances ready", func() bool { st, _ := a.PoolStatus("fn"); return st.Ready == 3 })
	sick := rt.ids()[0]
	rt.setSick(sick, true)
	failures := 0
	for range 60 {
		who, err := invokeWork(t, a, "")
		if err != nil {
			if !strings.Contains(err.Error(), "sick") {
				t.Fatal(err)
			}
			failures++
			continue
		}
		if who == sick {
			t.Fatal("the sick instance answered")
		}
	}
	if failures != n {
		t.Fatalf("the sick instance failed %d invocations before it was ejected, want %d", failures, n)
	}
	var ms MemberStatus
	for _, m := range mustStatus(t, a).Members {
		if m.Instance.ID() == sick {
			ms = m
		}
	}
	if ms.Health != "ejected" || !strings.Contains(ms.Reason, "3 instance-side failures in a row") {
		t.Fatalf("the sick instance: %+v", ms)
	}
	if list, _ := a.Instances("fn"); !hasHealth(list, sick, "ejected") {
		t.Fatalf("instances does not show the ejection: %+v", list)
	}
	// The function's health, and the metrics, read the same state.
	if f := a.Functions()[0]; f.Health != HealthDegraded || !strings.Contains(f.HealthReason, sick.String()+" ejected: 3 instance-side failures") {
		t.Fatalf("function while an instance is ejected: %s (%s), want degraded naming it", f.Health, f.HealthReason)
	}
	s := series(t, a)
	if m := labelled(s["spearlet_pool_ejected_instances"], map[string]string{"function": "fn"}); m.GetGauge().GetValue() != 1 {
		t.Fatalf("spearlet_pool_ejected_instances %v, want 1", m)
	}
	if m := labelled(s["spearlet_function_health"], map[string]string{"function": "fn", "state": HealthDegraded}); m.GetGauge().GetValue() != 1 {
		t.Fatalf("spearlet_function_health{state=degraded} %v, want 1", m)
	}
	// It recovers; once the ejection ends it serves again.
	rt.setSick(sick, false)
	eventually(t, "the recovered instance serving again", func() bool {
		who, err := invokeWork(t, a, "")
		return err == nil && who == sick
	})
	eventually(t, "probation passed", func() bool {
		_, _ = invokeWork(t, a, "")
		list, _ := a.Instances("fn")
		return hasHealth(list, sick, "ok")
	})
	if f := a.Functions()[0]; f.Health != HealthServing {
		t.Fatalf("function once probation passed: %s (%s), want serving", f.Health, f.HealthReason)
	}
}

func hasHealth(list []api.Instance, id spear.InstanceID, health string) bool {
	for _, in := range list {
		if in.ID == id.String() {
			return in.Health == health
		}
	}
	return false
}

func mustStatus(t *testing.T, a *Agent) PoolStatus {
	t.Helper()
	st, ok := a.PoolStatus("fn")
	if !ok {
		t.Fatal("no pool fn")
	}
	return st
}

// The last ready instance is never ejected, and the metrics say so.
func TestNeverEjectLastInstance(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.MaxInstances = 1
		f.Outlier = OutlierConfig{ConsecutiveErrors: 2}
	}))
	if _, err := invokeWork(t, a, ""); err != nil {
		t.Fatal(err)
	}
	rt.setSick(rt.ids()[0], true)
	for range 10 {
		if _, err := invokeWork(t, a, ""); err == nil || !strings.Contains(err.Error(), "sick") {
			t.Fatalf("err = %v, want the instance's own failure", err)
		}
	}
	st := mustStatus(t, a)
	if st.Ready != 1 || st.Ejections != 0 || st.EjectionsRefusedLast == 0 {
		t.Fatalf("status %+v: want the instance kept, and the refusals counted", st)
	}
	if got := counterValue(t, a.met.ejections.WithLabelValues("fn", "refused_last")); got != float64(st.EjectionsRefusedLast) {
		t.Fatalf("metric refused_last = %v, status says %d", got, st.EjectionsRefusedLast)
	}
}

// Scale to zero and back: an idle function goes to no instance, and the
// next invocation succeeds through a cold start.
func TestScaleToZeroAndBack(t *testing.T) {
	a, _ := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.IdleTimeout = Duration(50 * time.Millisecond)
	}))
	first, err := invoke(t, a, "", "x")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the idle instance stopped", func() bool {
		return a.Functions()[0].Instances == 0 && a.Functions()[0].Health == HealthNoInstances
	})
	res, err := invoke(t, a, "", "y")
	if err != nil || res.Instance == first.Instance {
		t.Fatalf("cold start: %v, %v", res.Instance, err)
	}
}

// min_instances stays up however idle.
func TestIdleTimeoutKeepsMinInstances(t *testing.T) {
	a, _ := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.MinInstances = 1
		f.IdleTimeout = Duration(20 * time.Millisecond)
	}))
	if _, err := invoke(t, a, "", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateInstance(testCtx(t), "fn"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "back to min_instances", func() bool { return a.Functions()[0].Instances == 1 })
	time.Sleep(100 * time.Millisecond) // several idle timeouts more
	if n := a.Functions()[0].Instances; n != 1 {
		t.Fatalf("%d instances, want min_instances 1", n)
	}
}

// A skewed pool of real (in-process) instances, one ten times slower:
// p2c-ewma keeps at least 80 % of invocations off it; round-robin gives
// it about a quarter. Proportions, not times, are asserted.
func TestSkewedPoolShares(t *testing.T) {
	if testing.Short() {
		t.Skip("runs about a thousand invocations")
	}
	for _, tc := range []struct {
		policy   balancer.Policy
		min, max float64
	}{
		{balancer.P2CEWMA, 0, 0.20},
		{balancer.RoundRobin, 0.20, 0.30},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			a, rt := newTestAgent(t, testConfig(func(f *FunctionConfig) {
				f.MinInstances, f.MaxInstances = 4, 4
				f.Balancer = string(tc.policy)
				f.Outlier.Disabled = true
			}))
			eventually(t, "four instances ready", func() bool { return mustStatus(t, a).Ready == 4 })
			slow := rt.ids()[0]
			rt.mu.Lock()
			rt.work, rt.delay[slow] = time.Millisecond, 10*time.Millisecond
			rt.mu.Unlock()
			const callers, each = 16, 50
			var mu sync.Mutex
			onSlow, total := 0, 0
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					for range each {
						who, err := invokeWork(t, a, "")
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						total++
						if who == slow {
							onSlow++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			share := float64(onSlow) / float64(total)
			t.Logf("%s: the slow instance served %d of %d (%.1f %%)", tc.policy, onSlow, total, share*100)
			if share < tc.min || share > tc.max {
				t.Fatalf("%s: the slow instance served %.3f, want %.2f to %.2f", tc.policy, share, tc.min, tc.max)
			}
		})
	}
}

// Hash affinity over the API: the same key reaches the same instance, in
// the HTTP header and in the invocation.
func TestHashAffinity(t *testing.T) {
	a, _ := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.MinInstances, f.MaxInstances = 4, 4
		f.Balancer = string(balancer.Hash)
	}))
	eventually(t, "four instances ready", func() bool { return mustStatus(t, a).Ready == 4 })
	owners := map[string]string{}
	for round := range 3 {
		for k := range 20 {
			key := fmt.Sprint("conversation-", k)
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/v1/functions/fn/invoke", strings.NewReader("x"))
			req.Header.Set(api.HeaderKey, key)
			a.Handler().ServeHTTP(rec, req)
			who := rec.Header().Get(api.HeaderInstance)
			if rec.Code != http.StatusOK || who == "" {
				t.Fatalf("invoke: %d %s", rec.Code, rec.Body)
			}
			if round > 0 && owners[key] != who {
				t.Fatalf("key %s went to %s, then to %s", key, owners[key], who)
			}
			owners[key] = who
		}
	}
	distinct := map[string]bool{}
	for _, who := range owners {
		distinct[who] = true
	}
	if len(distinct) < 2 {
		t.Fatalf("20 keys all on %v", distinct)
	}
}

// Dynamic discovery: an instance created through the API is balanced to
// at once, and one deleted, or killed, leaves the set without a failed
// invocation.
func TestInstancesJoinAndLeave(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.MinInstances, f.MaxInstances = 1, 3
		f.Balancer = string(balancer.RoundRobin)
	}))
	eventually(t, "one instance ready", func() bool { return mustStatus(t, a).Ready == 1 })
	created, err := a.CreateInstance(testCtx(t), "fn")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 4 {
		who, err := invokeWork(t, a, "")
		if err != nil {
			t.Fatal(err)
		}
		seen[who.String()] = true
	}
	if !seen[created.ID] {
		t.Fatalf("the created instance %s got no invocation of 4 (answers from %v)", created.ID, seen)
	}
	if err := a.DeleteInstance(testCtx(t), created.ID); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		who, err := invokeWork(t, a, "")
		if err != nil || who.String() == created.ID {
			t.Fatalf("after delete: %v, %v", who, err)
		}
	}
	// Killed from outside (a process killed, a pod deleted): gone from
	// the set as soon as its connection is.
	victim := rt.ids()[0]
	rt.crash(t, victim)
	for range 4 {
		if who, err := invokeWork(t, a, ""); err != nil || who == victim {
			t.Fatalf("after the kill: %v, %v", who, err)
		}
	}
}

// Which failures are retried on another instance, and which never are.
func TestRetryableCategories(t *testing.T) {
	id := spear.InstanceID{Runtime: spear.Process, Name: "fn-1"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"not connected", spear.InstanceErr(id, "channel", fmt.Errorf("%w: %w", spear.ErrNotSent, spear.ErrNotConnected)), true},
		{"closed before the write", spear.InstanceErr(id, "request", fmt.Errorf("%w: %w", spear.ErrNotSent, spear.ErrPeerGone)), true},
		{"write failed", spear.InstanceErr(id, "request", fmt.Errorf("%w: %w: broken pipe", spear.ErrNotSent, spear.ErrSendFailed)), true},
		{"instance unavailable", &spear.RemoteError{Code: spear.CodeUnavailable}, true},
		{"lost after the write", spear.InstanceErr(id, "request", fmt.Errorf("%w: EOF", spear.ErrPeerGone)), false},
		{"replaced", spear.InstanceErr(id, "request", spear.ErrReplaced), false},
		{"heartbeat timeout", spear.InstanceErr(id, "request", spear.ErrHeartbeatTimeout), false},
		{"closed by the agent", spear.InstanceErr(id, "request", spear.ErrChannelClosed), false},
		{"timeout", fmt.Errorf("%w: no answer", spear.ErrTimeout), false},
		{"function failed", &spear.RemoteError{Code: spear.CodeInternal}, false},
		{"canceled", context.Canceled, false},
	} {
		if got := retryable(context.Background(), tc.err, 1); got != tc.want {
			t.Errorf("%s: retryable = %v, want %v", tc.name, got, tc.want)
		}
	}
	if retryable(context.Background(), spear.ErrNotSent, maxAttempts) {
		t.Error("retried past maxAttempts")
	}
}

// The autoscaler follows Knative's: the stable window's average over the
// target, a panic when the short window asks for twice the ready
// instances, and no scaling down while panicking.
func TestAutoscaler(t *testing.T) {
	fn := FunctionConfig{TargetConcurrency: 10, StableWindow: Duration(60 * time.Second), PanicWindow: Duration(6 * time.Second), PanicThreshold: 2}
	s := newAutoscaler(fn)
	now := time.Unix(0, 0)
	var got int
	for range 60 { // a minute at 20 in flight: two instances
		now = now.Add(time.Second)
		got = s.observe(now, 20, 2)
	}
	if got != 2 || s.panicking {
		t.Fatalf("steady 20 at target 10: desired %d (panic %v), want 2", got, s.panicking)
	}
	for range 3 { // a burst to 100: the panic window asks for 10, 5x the ready
		now = now.Add(time.Second)
		got = s.observe(now, 100, 2)
	}
	if !s.panicking || got < 5 {
		t.Fatalf("burst: desired %d (panic %v), want a panic and a scale-up", got, s.panicking)
	}
	peak := got
	for range 10 { // the burst is over, but the panic holds the count
		now = now.Add(time.Second)
		got = s.observe(now, 0, peak)
	}
	if !s.panicking || got < peak {
		t.Fatalf("after the burst, within the stable window: desired %d (panic %v), want no scale-down", got, s.panicking)
	}
	for range 70 { // a stable window of nothing: the panic ends, down to 0
		now = now.Add(time.Second)
		got = s.observe(now, 0, peak)
	}
	if s.panicking || got != 0 {
		t.Fatalf("after a quiet stable window: desired %d (panic %v), want 0", got, s.panicking)
	}
}

// With a concurrency target the pool starts instances ahead of the
// waiters and stops them when the load is gone.
func TestTargetConcurrencyScales(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.MaxInstances, f.MaxConcurrency = 4, 8
		f.TargetConcurrency = 2
		f.StableWindow, f.PanicWindow = Duration(300*time.Millisecond), Duration(60*time.Millisecond)
	}))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { _, _ = invoke(t, a, "wait", "") })
	}
	eventually(t, "the autoscaler at max_instances", func() bool {
		st := mustStatus(t, a)
		return st.Desired == 4 && st.Live == 4
	})
	close(rt.gate)
	wg.Wait()
	eventually(t, "scaled down to none", func() bool { return mustStatus(t, a).Live == 0 })
}

// With latency_factor set, an instance far slower than its peers is
// ejected on the ticker, the reason naming the figures.
func TestLatencyOutlierEjected(t *testing.T) {
	a, rt := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.MinInstances, f.MaxInstances = 3, 3
		f.Balancer = string(balancer.RoundRobin)
		f.Outlier = OutlierConfig{LatencyFactor: 5, BaseEjection: Duration(time.Minute)}
	}))
	eventually(t, "three instances ready", func() bool { return mustStatus(t, a).Ready == 3 })
	slow := rt.ids()[0]
	rt.mu.Lock()
	rt.work, rt.delay[slow] = time.Millisecond, 50*time.Millisecond
	rt.mu.Unlock()
	for range 6 { // each instance measured twice
		if _, err := invokeWork(t, a, ""); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the slow instance ejected", func() bool {
		for _, m := range mustStatus(t, a).Members {
			if m.Instance.ID() == slow {
				return m.Health == "ejected" && strings.Contains(m.Reason, "over 5 times its peers' median")
			}
		}
		return false
	})
	for range 6 {
		if who, err := invokeWork(t, a, ""); err != nil || who == slow {
			t.Fatalf("after the ejection: %v, %v", who, err)
		}
	}
}

// connections: auto gives a busy instance more connections, up to its
// cap less one.
func TestAutoConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for several ticks of a second")
	}
	a, rt := newTestAgent(t, testConfig(func(f *FunctionConfig) {
		f.MaxInstances, f.MaxConcurrency = 1, 64
		f.Connections = Connections{Auto: true}
	}))
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	for range 24 {
		wg.Go(func() { _, _ = invoke(t, a, "wait", "") })
	}
	eventually(t, "three connections (the cap of 4 less one)", func() bool {
		list, _ := a.Instances("fn")
		return len(list) == 1 && list[0].Connections == 3
	})
	close(rt.gate)
}
