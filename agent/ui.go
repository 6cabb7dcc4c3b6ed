package agent

import (
	"encoding/json"
	"math"
	"net/http"
	"time"

	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/agent/ui"
	"github.com/spear-go/spear/stats"
)

// The dashboard (docs/observability.md): GET /ui/ is the page, GET
// /ui/events a stream of server-sent events, one "snapshot" event every
// dashboardTick with the functions, their health, their instances and
// each function's latency since the previous snapshot. The page's log
// pane follows an instance through the API's own
// /v1/instances/{id}/logs?follow=true. It is read-only: no route under
// /ui changes anything.

// dashboardTick is how often /ui/events sends a snapshot.
const dashboardTick = time.Second

// windowBounds are the bounds of the per-function latency windows: from
// 25µs up by a quarter each step, past a minute (about 4% resolution
// where it matters, 67 bounds).
var windowBounds = func() []time.Duration {
	var b []time.Duration
	for d := 25.0 * float64(time.Microsecond); d < float64(70*time.Second); d *= 1.25 {
		b = append(b, time.Duration(d))
	}
	return b
}()

// dashboardSnapshot is one event of /ui/events.
type dashboardSnapshot struct {
	Time      time.Time           `json:"time"`
	Ready     bool                `json:"ready"`
	Draining  bool                `json:"draining"`
	Functions []dashboardFunction `json:"functions"`
	Instances []api.Instance      `json:"instances"`
}

// dashboardFunction is a function with its invocation count and the
// latency of the invocations that ended since the previous snapshot.
type dashboardFunction struct {
	api.Function
	Invocations uint64        `json:"invocations"`
	Window      latencyWindow `json:"window"`
}

// latencyWindow summarises the invocations of one snapshot interval.
type latencyWindow struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
}

// uiHandler serves the dashboard's page and assets, with headers that
// keep it to its own origin: its scripts, styles and connections come
// from there only, and no other site may frame it.
func uiHandler() http.Handler {
	files := http.StripPrefix("/ui/", http.FileServerFS(ui.Assets()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// handleUIEvents streams dashboard snapshots until the client leaves.
func (a *Agent) handleUIEvents(w http.ResponseWriter, r *http.Request) {
	s := startSSE(w)
	prev := map[string][]uint64{} // this client's previous cumulative counts
	prevCount := map[string]uint64{}
	tick := time.NewTicker(dashboardTick)
	defer tick.Stop()
	for {
		b, err := json.Marshal(a.dashboardSnapshot(prev, prevCount))
		if err != nil {
			a.log.Warn("dashboard snapshot", "err", err)
			return
		}
		if s.event("snapshot", string(b)) != nil {
			return // the client left
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// dashboardSnapshot builds a snapshot; prev and prevCount hold the
// previous snapshot's latency counts, which it updates.
func (a *Agent) dashboardSnapshot(prev map[string][]uint64, prevCount map[string]uint64) dashboardSnapshot {
	fns, draining := a.Functions(), a.isDraining()
	ready, _ := readiness(draining, fns)
	snap := dashboardSnapshot{Time: time.Now(), Ready: ready, Draining: draining}
	for _, f := range fns {
		h := a.met.latencyOf(f.Name).LatencyHistogram(windowBounds)
		df := dashboardFunction{Function: f, Invocations: h.Count}
		if last, ok := prev[f.Name]; ok {
			df.Window = window(h, last, prevCount[f.Name])
		}
		prev[f.Name], prevCount[f.Name] = h.Cumulative, h.Count
		snap.Functions = append(snap.Functions, df)
	}
	snap.Instances, _ = a.Instances("")
	return snap
}

// window returns the latencies counted in cur but not in the earlier
// prev (cumulative counts at windowBounds, and the total).
func window(cur stats.Histogram, prev []uint64, prevCount uint64) latencyWindow {
	w := latencyWindow{Count: cur.Count - prevCount}
	if w.Count == 0 {
		return w
	}
	quantile := func(q float64) float64 {
		rank := uint64(math.Ceil(q * float64(w.Count)))
		for i, b := range windowBounds {
			if cur.Cumulative[i]-prev[i] >= rank {
				return float64(b) / float64(time.Millisecond)
			}
		}
		return float64(windowBounds[len(windowBounds)-1]) / float64(time.Millisecond)
	}
	w.P50, w.P99 = quantile(0.50), quantile(0.99)
	return w
}
