package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/client"
	"github.com/spear-go/spear/proto/agentpb"
	"github.com/spear-go/spear/runtime"
)

// series gathers a's metrics: for each family, its metrics.
func series(t *testing.T, a *Agent) map[string][]*dto.Metric {
	t.Helper()
	fams, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*dto.Metric{}
	for _, f := range fams {
		out[f.GetName()] = f.GetMetric()
	}
	return out
}

// labelled returns the metric of family name whose labels include want.
func labelled(ms []*dto.Metric, want map[string]string) *dto.Metric {
	for _, m := range ms {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range want {
			ok = ok && have[k] == v
		}
		if ok {
			return m
		}
	}
	return nil
}

func TestMetricsLintOverALiveAgent(t *testing.T) {
	a, _ := newTestAgent(t, testConfig(func(f *FunctionConfig) { f.MinInstances = 1 }))
	for _, method := range []string{"", "fail", "stream"} {
		_, _ = invoke(t, a, method, "a b")
	}
	eventually(t, "per-instance series", func() bool { return series(t, a)["spearlet_instance_requests_total"] != nil })
	problems, err := testutil.GatherAndLint(a.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestPerInstanceSeriesFollowTheInstance(t *testing.T) {
	a, _ := newTestAgent(t, testConfig(nil))
	res, err := invoke(t, a, "", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := invoke(t, a, "fail", "no"); err == nil {
		t.Fatal("method fail succeeded")
	}
	id := res.Instance.String()
	inst := map[string]string{"function": "fn", "instance": id}
	s := series(t, a)
	if m := labelled(s["spearlet_instance_requests_total"], inst); m.GetCounter().GetValue() != 2 {
		t.Errorf("requests_total %v, want 2", m)
	}
	if m := labelled(s["spearlet_instance_errors_total"], map[string]string{"instance": id, "kind": "remote"}); m.GetCounter().GetValue() != 1 {
		t.Errorf("errors_total{kind=remote} %v, want 1", m)
	}
	for _, name := range []string{"spearlet_instance_sent_bytes_total", "spearlet_instance_received_bytes_total"} {
		if m := labelled(s[name], inst); m.GetCounter().GetValue() < float64(len("hello")) {
			t.Errorf("%s %v, want at least the payload", name, m)
		}
	}
	if h := labelled(s["spearlet_instance_request_duration_seconds"], inst).GetHistogram(); h.GetSampleCount() != 2 || h.GetSampleSum() <= 0 ||
		h.GetBucket()[len(h.GetBucket())-1].GetCumulativeCount() != 2 {
		t.Errorf("request_duration %v, want 2 samples under the last bound", h)
	}
	if m := labelled(s["spearlet_instance_inflight_requests"], inst); m == nil || m.GetGauge().GetValue() != 0 {
		t.Errorf("inflight %v, want 0", m)
	}
	if m := labelled(s["spearlet_instance_info"], map[string]string{"instance": id, "runtime": "process", "transport": "memory"}); m == nil {
		t.Errorf("no spearlet_instance_info naming the runtime and transport: %v", s["spearlet_instance_info"])
	}
	if m := labelled(s["spearlet_instance_connected"], inst); m.GetGauge().GetValue() != 1 {
		t.Errorf("connected %v, want 1", m)
	}
	if m := labelled(s["spearlet_instance_reconnects_total"], inst); m == nil || m.GetCounter().GetValue() != 0 {
		t.Errorf("reconnects %v, want 0", m)
	}

	// Gone with the instance (once the pool has seen it go): no series is
	// left to name it.
	if err := a.DeleteInstance(testCtx(t), id); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the instance's series to go", func() bool {
		for name, ms := range series(t, a) {
			if strings.HasPrefix(name, "spearlet_instance_") && labelled(ms, map[string]string{"instance": id}) != nil {
				return false
			}
		}
		return true
	})
}

func TestPerInstanceSeriesOff(t *testing.T) {
	off := false
	cfg := testConfig(nil)
	cfg.Metrics.PerInstance = &off
	a, _ := newTestAgent(t, cfg)
	if _, err := invoke(t, a, "", "x"); err != nil {
		t.Fatal(err)
	}
	s := series(t, a)
	for name := range s {
		if slices.Contains([]string{"spearlet_instance_info", "spearlet_instance_requests_total", "spearlet_instance_request_duration_seconds"}, name) {
			t.Errorf("%s exported with per_instance: false", name)
		}
	}
	if labelled(s["spearlet_instances"], map[string]string{"function": "fn", "status": "running"}).GetGauge().GetValue() != 1 {
		t.Error("the per-function series went too")
	}
}

func TestBuildInfoStartsWaitsAndColdStarts(t *testing.T) {
	a, _ := newTestAgent(t, testConfig(nil)) // min_instances 0: the first invocation starts one
	for range 2 {
		if _, err := invoke(t, a, "", "x"); err != nil {
			t.Fatal(err)
		}
	}
	s := series(t, a)
	if m := s["spearlet_build_info"]; len(m) != 1 || m[0].GetGauge().GetValue() != 1 ||
		labelled(m, map[string]string{"goversion": goruntime.Version()}) == nil {
		t.Errorf("spearlet_build_info %v", m)
	}
	if h := labelled(s["spearlet_instance_start_duration_seconds"], map[string]string{"function": "fn", "runtime": "process"}).GetHistogram(); h.GetSampleCount() != 1 {
		t.Errorf("start duration %v, want one start", h)
	}
	if c := labelled(s["spearlet_cold_starts_total"], map[string]string{"function": "fn"}); c.GetCounter().GetValue() != 1 {
		t.Errorf("cold starts %v, want 1 (the second invocation found the instance)", c)
	}
	if h := labelled(s["spearlet_pool_wait_seconds"], map[string]string{"function": "fn"}).GetHistogram(); h.GetSampleCount() != 2 {
		t.Errorf("pool wait %v, want both invocations", h)
	}
}

// startFake starts an instance of the fake runtime outside any pool.
func startFake(t *testing.T, rt *fakeRuntime) *fakeInstance {
	t.Helper()
	id := spear.InstanceID{Runtime: spear.Process, Name: "fn-" + randomSuffix()}
	inst, err := rt.Start(testCtx(t), id, runtime.Settings{Function: "fn"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Stop(context.Background(), inst) })
	return inst.(*fakeInstance)
}

func TestFunctionHealth(t *testing.T) {
	f := newTestFactory(t)
	rt := newFakeRuntime(t, spear.Process, f)
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	running, other, sick := startFake(t, rt), startFake(t, rt), startFake(t, rt)
	sick.mu.Lock()
	sick.status, sick.reason = runtime.StatusUnhealthy, "missed heartbeats"
	sick.mu.Unlock()
	member := func(in *fakeInstance) MemberStatus { return MemberStatus{Instance: in, Health: InstanceOK} }
	fn := func(min int, readiness string) FunctionConfig {
		return FunctionConfig{Name: "fn", MinInstances: min, Readiness: readiness}
	}
	ejected := member(other)
	ejected.Health, ejected.Reason = InstanceEjected, "5 instance-side failures in a row"
	probation := member(other)
	probation.Health, probation.Reason = InstanceProbation, "latency 9ms is over 5 times its peers' median 1ms"
	leaving := member(sick)
	leaving.Leaving = true
	for _, tc := range []struct {
		name   string
		fn     FunctionConfig
		st     PoolStatus
		state  string
		reason string
		ready  bool
	}{
		{"scaled to zero", fn(0, ReadinessRequired), PoolStatus{}, HealthNoInstances, "min_instances 0", true},
		{"starting", fn(1, ReadinessRequired), PoolStatus{Starting: 1}, HealthNoInstances, "1 starting", false},
		{"optional", fn(1, ReadinessOptional), PoolStatus{Starting: 1}, HealthNoInstances, "1 starting", true},
		{"restart owed", fn(1, ReadinessRequired), PoolStatus{RestartsOwed: 1, LastFailure: "stopped unasked: exit 2"},
			HealthNoInstances, "1 restarts waiting out their back-off", false},
		{"serving", fn(1, ReadinessRequired), PoolStatus{Ready: 1, Members: []MemberStatus{member(running)}}, HealthServing, "", true},
		{"a leaving instance does not count", fn(1, ReadinessRequired), PoolStatus{Ready: 1, Members: []MemberStatus{member(running), leaving}},
			HealthServing, "", true},
		{"under min", fn(2, ReadinessRequired), PoolStatus{Ready: 1, Members: []MemberStatus{member(running)}}, HealthDegraded, "1 of min_instances 2 ready", false},
		{"under min, one ejected", fn(2, ReadinessRequired), PoolStatus{Ready: 1, Members: []MemberStatus{member(running), ejected}},
			HealthDegraded, "1 of min_instances 2 ready; " + other.id.String() + " ejected: 5 instance-side", false},
		{"a sick instance", fn(1, ReadinessRequired), PoolStatus{Ready: 1, Members: []MemberStatus{member(running), member(sick)}},
			HealthDegraded, sick.id.String() + " unhealthy: missed heartbeats", true},
		{"an ejected instance", fn(1, ReadinessRequired), PoolStatus{Ready: 1, Members: []MemberStatus{member(running), ejected}},
			HealthDegraded, other.id.String() + " ejected: 5 instance-side failures in a row", true},
		{"an instance on probation", fn(1, ReadinessRequired), PoolStatus{Ready: 2, Members: []MemberStatus{member(running), probation}},
			HealthDegraded, other.id.String() + " probation: latency 9ms", true},
		{"two sick", fn(1, ReadinessRequired), PoolStatus{Ready: 1, Members: []MemberStatus{member(running), ejected, member(sick)}},
			HealthDegraded, "(and 1 more)", true},
		{"crash looping with one up", fn(1, ReadinessRequired), PoolStatus{Ready: 1, Members: []MemberStatus{member(running)},
			FailedStarts: 3, CrashLoop: &CrashLoopStatus{Failures: 3}}, HealthCrashLooping, "3 starts failed in a row", true},
		{"crash looping, none up", fn(1, ReadinessRequired), PoolStatus{FailedStarts: 5, CrashLoop: &CrashLoopStatus{Failures: 5}, LastFailure: "start failed: boom"},
			HealthCrashLooping, "5 starts failed in a row", false},
		{"failed starts under the loop", fn(1, ReadinessRequired), PoolStatus{Ready: 1, Members: []MemberStatus{member(running)}, FailedStarts: 2},
			HealthServing, "", true},
	} {
		h := functionHealth(tc.fn, tc.st)
		if h.State != tc.state || !strings.Contains(h.Reason, tc.reason) || h.ReadinessMet != tc.ready {
			t.Errorf("%s: %+v, want %s (%q), readiness met %v", tc.name, h, tc.state, tc.reason, tc.ready)
		}
	}
}

// newFailingAgent is an agent whose function (min_instances 1) cannot
// start an instance until rt.failStarts is reset.
func newFailingAgent(t *testing.T) (*Agent, *fakeRuntime) {
	t.Helper()
	rt := newFakeRuntime(t, spear.Process, newTestFactory(t))
	rt.failStarts.Store(1 << 30)
	a, err := New(testConfig(func(f *FunctionConfig) { f.MinInstances = 1 }), Options{Runtimes: []runtime.Runtime{rt}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(testCtx(t)); err != nil {
			t.Error(err)
		}
	})
	return a, rt
}

func TestReadinessAndGRPCHealth(t *testing.T) {
	a, rt := newFailingAgent(t)
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	c := &client.Client{Addr: srv.URL}
	ctx := testCtx(t)
	hs := health.NewServer()
	check := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		a.updateGRPCHealth(hs, map[string]bool{})
		resp, err := hs.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health check %q: %v", service, err)
		}
		return resp.GetStatus()
	}

	eventually(t, "crash_looping", func() bool { return a.Functions()[0].Health == HealthCrashLooping })
	f := a.Functions()[0]
	if f.FailedStarts < crashLoopAfter || f.HealthReason != fmt.Sprintf("%d starts failed in a row", f.FailedStarts) || f.ReadinessMet ||
		!strings.Contains(f.LastError, "fake start failure") || f.NextRetry.IsZero() {
		t.Errorf("crash-looping function %+v, want the crash loop, its last start failure and its next retry", f)
	}
	err := c.Ready(ctx)
	if !client.IsCode(err, "not_ready") ||
		!strings.Contains(err.Error(), "fn: crash_looping, 0 of min_instances 1 ready (") ||
		!strings.Contains(err.Error(), " starts failed in a row), last error: start failed: ") || !strings.Contains(err.Error(), "fake start failure") {
		t.Errorf("Ready while crash-looping = %v", err)
	}
	if err := c.Live(ctx); err != nil {
		t.Errorf("Live while crash-looping = %v", err)
	}
	if s := check(GRPCHealthPrefix + "fn"); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health of a crash-looping function: %v", s)
	}
	if s := check(""); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health of a not ready agent: %v", s)
	}

	rt.failStarts.Store(0) // the next restart works
	eventually(t, "ready", func() bool { return c.Ready(ctx) == nil })
	if s := check(GRPCHealthPrefix + "fn"); s != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health once an instance runs: %v", s)
	}
	if s := check(""); s != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health of a ready agent: %v", s)
	}
	if h := a.Functions()[0].Health; h != HealthServing {
		t.Errorf("health once a start succeeded: %s, want serving", h)
	}

	if err := a.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(ctx); !client.IsCode(err, "shutting_down") {
		t.Errorf("Ready while draining = %v", err)
	}
	if err := c.Live(ctx); err != nil {
		t.Errorf("Live while draining = %v, want alive", err)
	}
}

func TestFollowLogsOverHTTPAndGRPC(t *testing.T) {
	a, _ := newTestAgent(t, testConfig(nil))
	res, err := invoke(t, a, "log", "before")
	if err != nil {
		t.Fatal(err)
	}
	id := res.Instance.String()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	gc := newGRPCClient(t, a)
	ctx := testCtx(t)

	var wg sync.WaitGroup
	var httpLines, grpcLines []string
	var httpErr, grpcErr error
	httpSeen, grpcSeen := make(chan struct{}), make(chan struct{})
	wg.Go(func() {
		httpErr = (&client.Client{Addr: srv.URL}).FollowLogs(ctx, id, 10, func(l string) error {
			httpLines = append(httpLines, l)
			if len(httpLines) == 1 {
				close(httpSeen)
			}
			return nil
		})
	})
	wg.Go(func() {
		st, err := gc.FollowInstanceLogs(ctx, &agentpb.InstanceLogsRequest{Id: id, Lines: 10})
		if err != nil {
			grpcErr = err
			close(grpcSeen)
			return
		}
		for {
			l, err := st.Recv()
			if err != nil {
				if err.Error() != "EOF" {
					grpcErr = err
				}
				return
			}
			grpcLines = append(grpcLines, l.GetLine())
			if len(grpcLines) == 1 {
				close(grpcSeen)
			}
		}
	})
	<-httpSeen // both followers have the old line: the new ones come live
	<-grpcSeen
	for _, l := range []string{"live 1", "live 2"} {
		if _, err := invoke(t, a, "log", l); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.DeleteInstance(ctx, id); err != nil { // ends both streams
		t.Fatal(err)
	}
	wg.Wait()
	want := []string{"before", "live 1", "live 2"}
	if httpErr != nil || !slices.Equal(httpLines, want) {
		t.Errorf("HTTP follow: %q, %v; want %q and a clean end", httpLines, httpErr, want)
	}
	if grpcErr != nil || !slices.Equal(grpcLines, want) {
		t.Errorf("gRPC follow: %q, %v; want %q and a clean end", grpcLines, grpcErr, want)
	}

	// Errors come before the stream starts, with their status.
	err = (&client.Client{Addr: srv.URL}).FollowLogs(ctx, "process:nope", 0, func(string) error { return nil })
	if !client.IsCode(err, "not_found") {
		t.Errorf("following an unknown instance: %v", err)
	}
}

func TestReadyzBody(t *testing.T) {
	_, _, srv := newTestServer(t, testConfig(func(f *FunctionConfig) { f.MinInstances = 1 }))
	eventually(t, "ready", func() bool {
		resp, _ := do(t, "GET", srv.URL+"/readyz", nil)
		return resp.StatusCode == 200
	})
	resp, body := do(t, "GET", srv.URL+"/readyz", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status": "ready"`) {
		t.Errorf("readyz %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", srv.URL+"/v1/functions", nil)
	var list api.FunctionList
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 || list.Functions[0].Health != HealthServing ||
		list.Functions[0].Ready != 1 || !list.Functions[0].ReadinessMet || list.Functions[0].Readiness != ReadinessRequired {
		t.Errorf("functions %s", body)
	}
}
