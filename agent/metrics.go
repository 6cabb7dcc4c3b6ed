package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spear-go/spear/runtime"
)

// Invocation outcomes, the values of the "outcome" label.
var outcomes = []string{"ok", "error", "timeout", "unavailable", "canceled", "rejected"}

// statuses are the values of the "status" label.
var statuses = []runtime.Status{
	runtime.StatusStarting, runtime.StatusRunning, runtime.StatusDegraded,
	runtime.StatusUnhealthy, runtime.StatusStopping, runtime.StatusStopped,
}

// metrics are the agent's Prometheus metrics. Label values come from fixed
// sets: configured function names, outcomes and statuses.
type metrics struct {
	invocations *prometheus.CounterVec   // function, outcome
	duration    *prometheus.HistogramVec // function
	starts      *prometheus.CounterVec   // function, outcome (ok, error)
	restarts    *prometheus.CounterVec   // function
	ejections   *prometheus.CounterVec   // function, outcome (ejected, refused_last, refused_cap)
}

func newMetrics(reg prometheus.Registerer, a *Agent) *metrics {
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
	}
	m.ejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spearlet_ejections_total",
		Help: "Outlier ejections by function and outcome: ejected, refused_last (the instance was the last ready one, so it stayed), refused_cap (max_ejected_percent reached).",
	}, []string{"function", "outcome"})
	reg.MustRegister(m.invocations, m.duration, m.starts, m.restarts, m.ejections, &poolCollector{a: a})
	return m
}

// init creates every series of a function, so that dashboards see zeros.
func (m *metrics) init(function string) {
	for _, o := range outcomes {
		m.invocations.WithLabelValues(function, o)
	}
	m.starts.WithLabelValues(function, "ok")
	m.starts.WithLabelValues(function, "error")
	m.restarts.WithLabelValues(function)
	m.duration.WithLabelValues(function)
	for _, o := range []string{"ejected", "refused_last", "refused_cap"} {
		m.ejections.WithLabelValues(function, o)
	}
}

// outcome names how an invocation ended.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	switch ErrorCode(err) {
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

var (
	instancesDesc = prometheus.NewDesc("spearlet_instances",
		"Live instances by function and status.", []string{"function", "status"}, nil)
	inflightDesc = prometheus.NewDesc("spearlet_inflight_invocations",
		"Invocations running now, by function.", []string{"function"}, nil)
)

// poolCollector reports the pools' state at scrape time.
type poolCollector struct{ a *Agent }

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- instancesDesc
	ch <- inflightDesc
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.a.pools(false) {
		name := p.fn.Name
		st := p.status()
		counts := map[runtime.Status]int{}
		inflight := st.InFlight
		for _, m := range st.Members {
			counts[m.Instance.Info().Status]++
		}
		for _, s := range statuses {
			ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(counts[s]), name, string(s))
		}
		ch <- prometheus.MustNewConstMetric(inflightDesc, prometheus.GaugeValue, float64(inflight), name)
	}
}
