package agent

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/buildinfo"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/stats"
)

// Invocation outcomes, the values of the "outcome" label.
var outcomes = []string{"ok", "error", "timeout", "unavailable", "canceled", "rejected"}

// statuses are the values of the "status" label.
var statuses = []runtime.Status{
	runtime.StatusStarting, runtime.StatusRunning, runtime.StatusDegraded,
	runtime.StatusUnhealthy, runtime.StatusStopping, runtime.StatusStopped,
}

// metrics are the agent's instruments: its Prometheus metrics, and the
// tracer when tracing is on. Label values come from fixed sets
// (configured function names, runtimes, outcomes, statuses) or, for the
// per-instance series, from live instances only. docs/observability.md
// lists every series.
type metrics struct {
	invocations   *prometheus.CounterVec   // function, outcome
	duration      *prometheus.HistogramVec // function
	starts        *prometheus.CounterVec   // function, outcome (ok, error)
	restarts      *prometheus.CounterVec   // function
	ejections     *prometheus.CounterVec   // function, outcome (ejected, refused_last, refused_cap)
	startDuration *prometheus.HistogramVec // function, runtime
	wait          *prometheus.HistogramVec // function
	coldStarts    *prometheus.CounterVec   // function

	// latency holds each function's invocation latencies in a fine
	// histogram, for the dashboard's per-function chart. A function keeps
	// its counters across reloads.
	latencyMu sync.Mutex
	latency   map[string]*stats.Counters

	tracer trace.Tracer // nil when tracing is off
}

func newMetrics(reg prometheus.Registerer, a *Agent, build buildinfo.Info, perInstance bool) *metrics {
	m := &metrics{
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spearlet_invocations_total",
			Help: "Invocations by function and outcome (ok, error, timeout, unavailable, canceled, rejected).",
		}, []string{"function", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spearlet_invocation_duration_seconds",
			Help:    "Invocation latency, waiting for an instance included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5ms to ~131s
		}, []string{"function"}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spearlet_instance_starts_total",
			Help: "Instance starts by function and outcome (ok, error).",
		}, []string{"function", "outcome"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spearlet_instance_restarts_total",
			Help: "Restarts scheduled after an instance stopped unasked.",
		}, []string{"function"}),
		startDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spearlet_instance_start_duration_seconds",
			Help:    "Time from asking the runtime for an instance to the instance running (connected and authenticated), for successful starts.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 13), // 1ms to ~60s
		}, []string{"function", "runtime"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spearlet_pool_wait_seconds",
			Help:    "Time an invocation waited for a free instance, a cold start included.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 11), // 10µs to ~10s
		}, []string{"function"}),
		coldStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spearlet_cold_starts_total",
			Help: "Instance starts asked for by an invocation that found no free instance.",
		}, []string{"function"}),
		latency: map[string]*stats.Counters{},
	}
	m.ejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spearlet_ejections_total",
		Help: "Outlier ejections by function and outcome: ejected, refused_last (the instance was the last ready one, so it stayed), refused_cap (max_ejected_percent reached).",
	}, []string{"function", "outcome"})
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "spearlet_build_info",
		Help: "Always 1; the labels say which spearlet this is.",
		ConstLabels: prometheus.Labels{
			"version": build.Version, "revision": build.Revision, "goversion": build.GoVersion,
		},
	})
	buildInfo.Set(1)
	reg.MustRegister(m.invocations, m.duration, m.starts, m.restarts, m.ejections, m.startDuration, m.wait, m.coldStarts,
		buildInfo, &poolCollector{a: a, perInstance: perInstance})
	return m
}

// fnInstruments are the series one function's invocations feed,
// resolved once when its pool is made so that an invocation only counts
// (no label lookups, no shared lock).
type fnInstruments struct {
	invocations map[string]prometheus.Counter // by outcome
	duration    prometheus.Observer
	wait        prometheus.Observer
	latency     *stats.Counters
}

// init creates every series of a function, so that dashboards see zeros,
// and returns those its invocations feed.
func (m *metrics) init(function string, rt spear.RuntimeType) *fnInstruments {
	ins := &fnInstruments{
		invocations: make(map[string]prometheus.Counter, len(outcomes)),
		duration:    m.duration.WithLabelValues(function),
		wait:        m.wait.WithLabelValues(function),
	}
	for _, o := range outcomes {
		ins.invocations[o] = m.invocations.WithLabelValues(function, o)
	}
	m.starts.WithLabelValues(function, "ok")
	m.starts.WithLabelValues(function, "error")
	m.restarts.WithLabelValues(function)
	for _, o := range []string{"ejected", "refused_last", "refused_cap"} {
		m.ejections.WithLabelValues(function, o)
	}
	m.startDuration.WithLabelValues(function, rt.String())
	m.coldStarts.WithLabelValues(function)
	m.latencyMu.Lock()
	if m.latency[function] == nil {
		m.latency[function] = stats.New()
	}
	ins.latency = m.latency[function]
	m.latencyMu.Unlock()
	return ins
}

// latencyOf returns function's latency counters; init must have run.
func (m *metrics) latencyOf(function string) *stats.Counters {
	m.latencyMu.Lock()
	defer m.latencyMu.Unlock()
	return m.latency[function]
}

// started records a successful instance start that took d.
func (m *metrics) started(function string, rt spear.RuntimeType, d time.Duration) {
	m.starts.WithLabelValues(function, "ok").Inc()
	m.startDuration.WithLabelValues(function, rt.String()).Observe(d.Seconds())
}

// coldStart counts a start that an invocation asked for, and when tracing
// opens its span, a child of ctx's. The caller ends it with the attempt.
func (m *metrics) coldStart(ctx context.Context, function string, rt spear.RuntimeType) *coldStart {
	m.coldStarts.WithLabelValues(function).Inc()
	if m.tracer == nil {
		return nil
	}
	_, span := startInstanceSpan(ctx, m.tracer, function, rt)
	return &coldStart{span: span}
}

// coldStart is an invocation's wait for the instance start it asked for.
// Its methods are no-ops on nil (tracing off).
type coldStart struct {
	span  trace.Span
	ended bool
}

// end ends the span with the attempt's outcome, or as abandoned when the
// attempt has not finished (the invocation stopped waiting; the start
// goes on). Only the first call counts.
func (c *coldStart) end(a *attempt) {
	if c == nil || c.ended {
		return
	}
	c.ended = true
	endInstanceSpan(c.span, a)
}

// outcome names how an invocation that failed with an error of class c
// ended.
func (c class) outcome() string {
	switch c.code {
	case "deadline_exceeded":
		return "timeout"
	case "no_instance", "shutting_down", "instance_failed":
		return "unavailable"
	case "canceled":
		return "canceled"
	case "payload_too_large", "invalid_argument":
		return "rejected"
	}
	return "error"
}

// Series the pools report at scrape time.
var (
	instancesDesc = prometheus.NewDesc("spearlet_instances",
		"Live instances by function and status.", []string{"function", "status"}, nil)
	inflightDesc = prometheus.NewDesc("spearlet_inflight_invocations",
		"Invocations running now, by function.", []string{"function"}, nil)
	readyInstDesc = prometheus.NewDesc("spearlet_pool_ready_instances",
		"Live instances balanced to now: running, connected, not ejected, not being stopped.", []string{"function"}, nil)
	ejectedDesc = prometheus.NewDesc("spearlet_pool_ejected_instances",
		"Live instances that outlier ejection keeps out of balancing now.", []string{"function"}, nil)
	desiredDesc = prometheus.NewDesc("spearlet_pool_desired_instances",
		"The autoscaler's instance count (target_concurrency); 0 without a target.", []string{"function"}, nil)
	pendingDesc = prometheus.NewDesc("spearlet_pool_pending_starts",
		"Instance starts in progress, and restarts waiting out their back-off.", []string{"function"}, nil)
	queuedDesc = prometheus.NewDesc("spearlet_pool_queued_invocations",
		"Invocations queued for a free instance (at most max_queue).", []string{"function"}, nil)
	failedStartsDesc = prometheus.NewDesc("spearlet_pool_failed_starts",
		"Instance starts that failed in a row; at 3 the function is crash-looping. 0 once a start succeeds.", []string{"function"}, nil)
	crashLoopingDesc = prometheus.NewDesc("spearlet_function_crash_looping",
		"1 while the function is in crash-loop back-off (health crash_looping), else 0.", []string{"function"}, nil)
	healthDesc = prometheus.NewDesc("spearlet_function_health",
		"1 for the function's current health state (serving, degraded, crash_looping, no_instances), 0 for the others.", []string{"function", "state"}, nil)
	readinessDesc = prometheus.NewDesc("spearlet_function_readiness_met",
		"1 when the function does not hold back the agent's readiness (min_instances ready, or readiness optional).", []string{"function"}, nil)
)

// Per-instance series, labelled function and instance; the series of an
// instance go when it does.
var (
	instLabels    = []string{"function", "instance"}
	instInfoDesc  = prometheus.NewDesc("spearlet_instance_info", "Always 1 for a live instance; labels name its runtime and transport.", []string{"function", "instance", "runtime", "transport"}, nil)
	instStartDesc = prometheus.NewDesc("spearlet_instance_start_time_seconds", "When the instance was created, in seconds since the epoch.", instLabels, nil)
	instUpDesc    = prometheus.NewDesc("spearlet_instance_connected", "1 while the instance's channel has an authenticated connection.", instLabels, nil)
	instReqDesc   = prometheus.NewDesc("spearlet_instance_requests_total", "Requests the agent sent the instance that were answered (with a result or an error).", instLabels, nil)
	instErrDesc   = prometheus.NewDesc("spearlet_instance_errors_total", "Channel errors by kind (send, receive, timeout, canceled, closed, invalid, auth, remote, overflow, heartbeat); kinds never seen are absent.", []string{"function", "instance", "kind"}, nil)
	instSentDesc  = prometheus.NewDesc("spearlet_instance_sent_bytes_total", "Bytes of frames the agent sent the instance.", instLabels, nil)
	instRecvDesc  = prometheus.NewDesc("spearlet_instance_received_bytes_total", "Bytes of frames the agent received from the instance.", instLabels, nil)
	instMsgOut    = prometheus.NewDesc("spearlet_instance_sent_messages_total", "Frames the agent sent the instance.", instLabels, nil)
	instMsgIn     = prometheus.NewDesc("spearlet_instance_received_messages_total", "Frames the agent received from the instance.", instLabels, nil)
	instLatDesc   = prometheus.NewDesc("spearlet_instance_request_duration_seconds", "Round trip of answered requests on the instance's channel.", instLabels, nil)
	instInflight  = prometheus.NewDesc("spearlet_instance_inflight_requests", "Invocations running on the instance now.", instLabels, nil)
	instRTTDesc   = prometheus.NewDesc("spearlet_instance_heartbeat_rtt_seconds", "Round trip of the last heartbeat probe the agent sent on the idle channel; absent until one was measured.", instLabels, nil)
	instReconDesc = prometheus.NewDesc("spearlet_instance_reconnects_total", "Connections the instance bound after its first: reconnections, wasm resets included.", instLabels, nil)
)

// instanceBuckets are the upper bounds of spearlet_instance_request_duration_seconds.
var instanceBuckets = []time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second,
}

// poolCollector reports the pools' state, and the live instances' channel
// statistics, at scrape time.
type poolCollector struct {
	a           *Agent
	perInstance bool
}

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{instancesDesc, inflightDesc, readyInstDesc, ejectedDesc, desiredDesc, pendingDesc,
		queuedDesc, failedStartsDesc, crashLoopingDesc, healthDesc, readinessDesc} {
		ch <- d
	}
	if c.perInstance {
		for _, d := range []*prometheus.Desc{instInfoDesc, instStartDesc, instUpDesc, instReqDesc, instErrDesc,
			instSentDesc, instRecvDesc, instMsgOut, instMsgIn, instLatDesc, instInflight, instRTTDesc, instReconDesc} {
			ch <- d
		}
	}
}

// Collect implements prometheus.Collector.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, p := range c.a.pools(false) {
		name := p.fn.Name
		st := p.status()
		h := functionHealth(p.fn, st)
		counts := map[runtime.Status]int{}
		ejected := 0
		for _, m := range st.Members {
			counts[m.Instance.Info().Status]++
			if m.Health == InstanceEjected {
				ejected++
			}
		}
		for _, s := range statuses {
			gauge(instancesDesc, float64(counts[s]), name, string(s))
		}
		gauge(inflightDesc, float64(st.InFlight), name)
		gauge(readyInstDesc, float64(st.Ready), name)
		gauge(ejectedDesc, float64(ejected), name)
		gauge(desiredDesc, float64(st.Desired), name)
		gauge(pendingDesc, float64(st.Starting+st.RestartsOwed), name)
		gauge(queuedDesc, float64(st.Queued), name)
		gauge(failedStartsDesc, float64(st.FailedStarts), name)
		gauge(crashLoopingDesc, b2f(h.State == HealthCrashLooping), name)
		for _, s := range healthStates {
			gauge(healthDesc, b2f(h.State == s), name, s)
		}
		gauge(readinessDesc, b2f(h.ReadinessMet), name)
		if c.perInstance {
			for _, m := range st.Members {
				collectInstance(ch, name, m)
			}
		}
	}
}

// collectInstance reports one live instance's series.
func collectInstance(ch chan<- prometheus.Metric, function string, m MemberStatus) {
	info := m.Instance.Info()
	chn := m.Instance.Channel()
	id := info.ID.String()
	s := chn.Stats()
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, function, id)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), function, id)
	}
	ch <- prometheus.MustNewConstMetric(instInfoDesc, prometheus.GaugeValue, 1, function, id, info.ID.Runtime.String(), string(chn.Type()))
	gauge(instStartDesc, float64(info.Created.UnixNano())/1e9)
	gauge(instUpDesc, b2f(chn.IsConnected()))
	gauge(instInflight, float64(m.InFlight))
	counter(instSentDesc, s.BytesSent)
	counter(instRecvDesc, s.BytesReceived)
	counter(instMsgOut, s.MessagesSent)
	counter(instMsgIn, s.MessagesReceived)
	counter(instReconDesc, reconnects(s))
	for kind, n := range s.Errors {
		ch <- prometheus.MustNewConstMetric(instErrDesc, prometheus.CounterValue, float64(n), function, id, kind)
	}
	if s.HeartbeatRTT > 0 {
		gauge(instRTTDesc, s.HeartbeatRTT.Seconds())
	}
	hist := chn.LatencyHistogram(instanceBuckets)
	counter(instReqDesc, hist.Count)
	buckets := make(map[float64]uint64, len(instanceBuckets))
	for i, b := range instanceBuckets {
		buckets[b.Seconds()] = hist.Cumulative[i]
	}
	ch <- prometheus.MustNewConstHistogram(instLatDesc, hist.Count, hist.Sum.Seconds(), buckets, function, id)
}

// reconnects counts the connections bound after the first.
func reconnects(s stats.Snapshot) uint64 {
	if s.Connects == 0 {
		return 0
	}
	return s.Connects - 1
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
