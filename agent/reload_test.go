package agent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
)

// fnConfig is a process function on the fake runtime, with min_instances
// min.
func fnConfig(name string, min int) FunctionConfig {
	return FunctionConfig{Name: name, Runtime: "process", MinInstances: min, Spec: process.Spec{Command: "unused"},
		Restart: RestartConfig{InitialBackoff: Duration(time.Millisecond), MaxBackoff: Duration(10 * time.Millisecond)}}
}

// liveIDs returns the ids of function's live (not stopped) instances.
func liveIDs(t *testing.T, a *Agent, function string) []string {
	t.Helper()
	list, err := a.Instances(function)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range list {
		if in.Status != string(runtime.StatusStopped) {
			ids = append(ids, in.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func waitRunning(t *testing.T, a *Agent, function string, n int) {
	t.Helper()
	eventually(t, function+" running", func() bool {
		list, _ := a.Instances(function)
		k := 0
		for _, in := range list {
			if in.Status == string(runtime.StatusRunning) {
				k++
			}
		}
		return k == n
	})
}

// A reload starts added functions, rolls changed ones onto new
// instances, drains and stops removed ones, and leaves unchanged ones
// alone.
func TestReload(t *testing.T) {
	old := Config{Functions: []FunctionConfig{fnConfig("same", 1), fnConfig("changed", 1), fnConfig("gone", 2)}}
	a, _ := newTestAgent(t, old)
	for _, fn := range old.Functions {
		waitRunning(t, a, fn.Name, fn.MinInstances)
	}
	same, changed, gone := liveIDs(t, a, "same"), liveIDs(t, a, "changed"), liveIDs(t, a, "gone")

	next := Config{InvokeTimeout: Duration(7 * time.Second), Functions: []FunctionConfig{fnConfig("added", 1), fnConfig("same", 1), fnConfig("changed", 2)}}
	res, err := a.Reload(testCtx(t), next)
	if err != nil {
		t.Fatal(err)
	}
	want := api.Reload{Added: []string{"added"}, Changed: []string{"changed"}, Removed: []string{"gone"}, Unchanged: []string{"same"}}
	if !slices.Equal(res.Added, want.Added) || !slices.Equal(res.Changed, want.Changed) || !slices.Equal(res.Removed, want.Removed) || !slices.Equal(res.Unchanged, want.Unchanged) {
		t.Errorf("reload = %+v, want %+v", res, want)
	}
	// Reload returns with the new instances running and the old gone.
	if got := liveIDs(t, a, "same"); !slices.Equal(got, same) {
		t.Errorf("unchanged function's instances %v, want %v untouched", got, same)
	}
	if got := liveIDs(t, a, "changed"); len(got) != 2 || slices.Contains(got, changed[0]) {
		t.Errorf("changed function's instances %v, want two new ones (old: %v)", got, changed)
	}
	if got := liveIDs(t, a, "added"); len(got) != 1 {
		t.Errorf("added function's instances %v", got)
	}
	if _, err := a.Instances("gone"); !errors.Is(err, ErrUnknownFunction) {
		t.Errorf("removed function: %v, want ErrUnknownFunction", err)
	}
	all, _ := a.Instances("")
	for _, in := range all {
		if slices.Contains(gone, in.ID) || slices.Contains(changed, in.ID) {
			t.Errorf("old instance %s is still listed (%s)", in.ID, in.Status)
		}
	}
	if _, err := a.Invoke(testCtx(t), Invocation{Function: "gone"}); !errors.Is(err, ErrUnknownFunction) {
		t.Errorf("invoke removed function: %v", err)
	}
	if _, err := a.Invoke(testCtx(t), Invocation{Function: "added"}); err != nil {
		t.Errorf("invoke added function: %v", err)
	}
	if got := a.Config().InvokeTimeout.D(); got != 7*time.Second {
		t.Errorf("invoke_timeout after reload = %s", got)
	}
	var names []string
	for _, f := range a.Functions() {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"added", "same", "changed"}) {
		t.Errorf("functions after reload = %v", names)
	}

	// The same configuration again changes nothing.
	res, err = a.Reload(testCtx(t), next)
	if err != nil || len(res.Unchanged) != 3 || len(res.Added)+len(res.Changed)+len(res.Removed) != 0 {
		t.Errorf("second reload = %+v, %v", res, err)
	}
}

// An invalid configuration, or one that changes what only a restart
// applies, is refused whole and changes nothing.
func TestReloadRefused(t *testing.T) {
	old := Config{Functions: []FunctionConfig{fnConfig("fn", 1)}}
	a, _ := newTestAgent(t, old)
	waitRunning(t, a, "fn", 1)
	before := liveIDs(t, a, "fn")

	bad := Config{Functions: []FunctionConfig{fnConfig("fn", 2), fnConfig("new", 0), {Name: "Bad", Runtime: "process"}}}
	_, err := a.Reload(testCtx(t), bad)
	if !errors.Is(err, spear.ErrInvalidConfig) || !strings.Contains(err.Error(), "functions[2].name") || !strings.Contains(err.Error(), "functions[2]: no process spec") {
		t.Errorf("invalid reload: %v, want every problem", err)
	}
	if got := HTTPStatus(err); got != 400 || ErrorCode(err) != "invalid_config" {
		t.Errorf("invalid reload answers %d %s", got, ErrorCode(err))
	}

	moved := Config{API: APIConfig{HTTPAddr: "127.0.0.1:1"}, MaxPayload: 1 << 20, Functions: []FunctionConfig{fnConfig("fn", 2)}}
	_, err = a.Reload(testCtx(t), moved)
	if !errors.Is(err, spear.ErrInvalidConfig) || !strings.Contains(err.Error(), "api.http_addr: changed; a restart applies it") ||
		!strings.Contains(err.Error(), "max_payload: changed") {
		t.Errorf("restart-only reload: %v", err)
	}
	if got := liveIDs(t, a, "fn"); !slices.Equal(got, before) || a.function("new") != nil {
		t.Errorf("after refused reloads: instances %v (want %v), functions %v", got, before, a.Functions())
	}
}

// When the new instances of a changed function cannot start, the reload
// fails at once with the start's error, and the old instances keep
// serving.
func TestReloadFailedStart(t *testing.T) {
	a, rt := newTestAgent(t, Config{Functions: []FunctionConfig{fnConfig("fn", 1)}})
	waitRunning(t, a, "fn", 1)
	before := liveIDs(t, a, "fn")
	rt.failStarts.Store(1000)
	_, err := a.Reload(testCtx(t), Config{Functions: []FunctionConfig{fnConfig("fn", 2), fnConfig("other", 1)}})
	if !errors.Is(err, ErrNoInstance) || !strings.Contains(err.Error(), "fake start failure") {
		t.Fatalf("reload: %v, want the start's error", err)
	}
	rt.failStarts.Store(0)
	if got := liveIDs(t, a, "fn"); !slices.Equal(got, before) || a.function("other") != nil {
		t.Errorf("after a failed reload: %v (want %v), %v", got, before, a.Functions())
	}
	if _, err := a.Invoke(testCtx(t), Invocation{Function: "fn"}); err != nil {
		t.Errorf("the old configuration does not serve: %v", err)
	}
}

// A removed function's invocations in flight finish before its instances
// stop; new ones are refused at once.
func TestReloadDrains(t *testing.T) {
	a, rt := newTestAgent(t, Config{Functions: []FunctionConfig{fnConfig("keep", 1), fnConfig("gone", 1)}})
	waitRunning(t, a, "gone", 1)
	done := make(chan error, 1)
	go func() {
		_, err := a.Invoke(testCtx(t), Invocation{Function: "gone", Method: "wait"})
		done <- err
	}()
	eventually(t, "the invocation in flight", func() bool {
		list, _ := a.Instances("gone")
		return len(list) == 1 && list[0].InFlight == 1
	})
	reloaded := make(chan error, 1)
	go func() {
		_, err := a.Reload(testCtx(t), Config{Functions: []FunctionConfig{fnConfig("keep", 1)}})
		reloaded <- err
	}()
	eventually(t, "the switch", func() bool { return a.function("gone") == nil })
	if _, err := a.Invoke(testCtx(t), Invocation{Function: "gone"}); !errors.Is(err, ErrUnknownFunction) {
		t.Errorf("new invocation of a removed function: %v", err)
	}
	// Still draining: the instance is listed, and the reload waits.
	all, _ := a.Instances("")
	if !slices.ContainsFunc(all, func(in api.Instance) bool { return in.Function == "gone" && in.Status == "running" }) {
		t.Errorf("the draining instance is not listed: %+v", all)
	}
	select {
	case err := <-reloaded:
		t.Fatalf("reload returned before the drain: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(rt.gate)
	if err := <-done; err != nil {
		t.Errorf("the invocation in flight failed: %v", err)
	}
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	all, _ = a.Instances("")
	for _, in := range all {
		if in.Function == "gone" {
			t.Errorf("removed function's instance %s still listed after the reload", in.ID)
		}
	}
}

// Invocations of an unchanged and a changed function keep succeeding
// while reloads roll the changed one back and forth.
func TestReloadUnderLoad(t *testing.T) {
	a, _ := newTestAgent(t, Config{Functions: []FunctionConfig{fnConfig("same", 1), fnConfig("roll", 1)}})
	ctx, cancel := context.WithCancel(testCtx(t))
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for i := range 4 {
		fn := []string{"same", "roll"}[i%2]
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := a.Invoke(ctx, Invocation{Function: fn}); err != nil && ctx.Err() == nil {
					failed.Add(1)
					t.Errorf("%s: %v", fn, err)
				} else if err == nil {
					ok.Add(1)
				}
			}
		})
	}
	for i := range 6 {
		if _, err := a.Reload(testCtx(t), Config{Functions: []FunctionConfig{fnConfig("same", 1), fnConfig("roll", 1+i%2)}}); err != nil {
			t.Error(err)
		}
	}
	cancel()
	wg.Wait()
	t.Logf("%d invocations during 6 reloads, %d failed", ok.Load(), failed.Load())
	if ok.Load() == 0 {
		t.Error("no invocation ran")
	}
}

// A reload that adds the first function of a runtime the agent does not
// run builds that runtime with Options.NewRuntime; without it the reload
// is refused.
func TestReloadNewRuntime(t *testing.T) {
	f := newTestFactory(t)
	proc := newFakeRuntime(t, spear.Process, f)
	var built atomic.Int32
	a, err := New(Config{Functions: []FunctionConfig{fnConfig("fn", 0)}}, Options{
		Runtimes: []runtime.Runtime{proc},
		NewRuntime: func(t spear.RuntimeType) (runtime.Runtime, error) {
			built.Add(1)
			return newFakeRuntime(nil, t, f), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	fake := FunctionConfig{Name: "fake", Runtime: "agent-fake", MinInstances: 1, Spec: fakeSpec{Image: "x"}}
	if _, err := a.Reload(testCtx(t), Config{Functions: []FunctionConfig{fnConfig("fn", 0), fake}}); err != nil {
		t.Fatal(err)
	}
	if built.Load() != 1 {
		t.Errorf("built %d runtimes", built.Load())
	}
	if _, err := a.Invoke(testCtx(t), Invocation{Function: "fake"}); err != nil {
		t.Error(err)
	}

	b, _ := newTestAgent(t, Config{Functions: []FunctionConfig{fnConfig("fn", 0)}})
	if _, err := b.Reload(testCtx(t), Config{Functions: []FunctionConfig{fake}}); !errors.Is(err, spear.ErrUnsupportedRuntime) {
		t.Errorf("reload without NewRuntime: %v", err)
	}
}

// ReloadConfig reads the configuration with Options.Load; its errors are
// the reload's.
func TestReloadConfig(t *testing.T) {
	a, _ := newTestAgent(t, Config{Functions: []FunctionConfig{fnConfig("fn", 0)}})
	if _, err := a.ReloadConfig(testCtx(t)); !errors.Is(err, spear.ErrConfig) || ErrorCode(err) != "failed_precondition" {
		t.Errorf("no Load: %v (%s)", err, ErrorCode(err))
	}
	f := newTestFactory(t)
	var calls atomic.Int32
	b, err := New(Config{Functions: []FunctionConfig{fnConfig("fn", 0)}}, Options{
		Runtimes: []runtime.Runtime{newFakeRuntime(t, spear.Process, f)},
		Load: func() (Config, error) {
			if calls.Add(1) == 1 {
				return ParseConfig([]byte("functions: [{name: fn, runtime: process, comand: x}]\n"))
			}
			return Config{Functions: []FunctionConfig{fnConfig("fn", 0), fnConfig("two", 0)}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	if _, err := b.ReloadConfig(testCtx(t)); err == nil || !strings.Contains(err.Error(), `did you mean "command"?`) {
		t.Errorf("bad file: %v", err)
	}
	if res, err := b.ReloadConfig(testCtx(t)); err != nil || !slices.Equal(res.Added, []string{"two"}) {
		t.Errorf("reload = %+v, %v", res, err)
	}
}

// A function a reload rolls onto a new pool goes on counting in the same
// series: its invocations, its latency and the dashboard's latency
// counters carry across.
func TestReloadKeepsFunctionSeries(t *testing.T) {
	a, _ := newTestAgent(t, Config{Functions: []FunctionConfig{fnConfig("fn", 0)}})
	if _, err := invoke(t, a, "", "before"); err != nil {
		t.Fatal(err)
	}
	next := fnConfig("fn", 0)
	next.MaxInstances = 3
	if res, err := a.Reload(testCtx(t), Config{Functions: []FunctionConfig{next}}); err != nil || !slices.Equal(res.Changed, []string{"fn"}) {
		t.Fatalf("reload = %+v, %v; want fn changed", res, err)
	}
	if _, err := invoke(t, a, "", "after"); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, a.met.invocations.WithLabelValues("fn", "ok")); got != 2 {
		t.Errorf("invocations ok = %v, want 2 (one per pool)", got)
	}
	if got := a.met.latencyOf("fn").LatencyHistogram(windowBounds).Count; got != 2 {
		t.Errorf("dashboard latency count = %d, want 2", got)
	}
	var m dto.Metric
	if err := a.met.duration.WithLabelValues("fn").(prometheus.Histogram).Write(&m); err != nil || m.GetHistogram().GetSampleCount() != 2 {
		t.Errorf("duration samples = %d (%v), want 2", m.GetHistogram().GetSampleCount(), err)
	}
}
