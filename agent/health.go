package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/runtime"
)

// Health states of a function, worst first (docs/observability.md).
const (
	// HealthCrashLooping: its instances keep failing (crashLoopFailures
	// unasked stops or failed starts in a row) and none has run well
	// since.
	HealthCrashLooping = "crash_looping"
	// HealthNoInstances: no instance runs. With min_instances 0 that is
	// the resting state; the next invocation starts one.
	HealthNoInstances = "no_instances"
	// HealthDegraded: instances run, but fewer than min_instances, or some
	// of them are unhealthy, disconnected or ejected.
	HealthDegraded = "degraded"
	// HealthServing: min_instances run and every live instance is well.
	HealthServing = "serving"
)

// healthStates are the values of the "state" label of
// spearlet_function_health.
var healthStates = []string{HealthServing, HealthDegraded, HealthCrashLooping, HealthNoInstances}

// crashLoopFailures is how many consecutive unasked stops make a function
// crash-looping.
const crashLoopFailures = 3

// GRPCHealthPrefix starts the gRPC health service name of each function:
// "spear.function.<name>".
const GRPCHealthPrefix = "spear.function."

// healthPoll is how often Run refreshes the gRPC health statuses.
const healthPoll = 500 * time.Millisecond

// fnHealth is a function's aggregated health.
type fnHealth struct {
	State   string
	Reason  string
	Running int  // live instances running and connected
	Ready   bool // min_instances running, or readiness optional
}

// functionHealth aggregates a function's health from its pool's state.
// Instances being stopped on purpose do not count.
func functionHealth(fn FunctionConfig, st poolStatus, now time.Time) fnHealth {
	var h fnHealth
	var sick []string
	stable := false // an instance has run for max_backoff: the pool's failure count is stale
	for _, m := range st.Live {
		if m.leaving {
			continue
		}
		info := m.inst.Info()
		up := (info.Status == runtime.StatusRunning || info.Status == runtime.StatusDegraded) && m.inst.Channel().IsConnected()
		switch {
		case up && !m.ejected:
			h.Running++
			if info.Status == runtime.StatusDegraded {
				sick = append(sick, describeSick(info.ID.String(), "degraded", info.Reason))
			}
			if now.Sub(m.started) >= fn.Restart.MaxBackoff.D() {
				stable = true
			}
		case m.ejected:
			sick = append(sick, describeSick(info.ID.String(), "ejected", m.lastErr))
		case info.Status != runtime.StatusStarting:
			sick = append(sick, describeSick(info.ID.String(), string(info.Status), info.Reason))
		}
	}
	h.Ready = fn.Readiness == ReadinessOptional || h.Running >= fn.MinInstances
	switch {
	case st.Failures >= crashLoopFailures && !stable:
		h.State = HealthCrashLooping
		h.Reason = fmt.Sprintf("%d failures in a row; last: %s", st.Failures, st.LastFailure)
	case h.Running == 0:
		h.State = HealthNoInstances
		switch {
		case st.Pending > 0:
			h.Reason = fmt.Sprintf("%d starting", st.Pending)
		case fn.MinInstances == 0:
			h.Reason = "none needed (min_instances 0); the next invocation starts one"
		case st.LastFailure != "":
			h.Reason = st.LastFailure
		}
	case h.Running < fn.MinInstances:
		h.State = HealthDegraded
		h.Reason = fmt.Sprintf("%d of min_instances %d running", h.Running, fn.MinInstances)
	case len(sick) > 0:
		h.State = HealthDegraded
		h.Reason = sick[0]
		if len(sick) > 1 {
			h.Reason += fmt.Sprintf(" (and %d more)", len(sick)-1)
		}
	default:
		h.State = HealthServing
	}
	return h
}

func describeSick(id, status, reason string) string {
	if reason == "" {
		return id + " " + status
	}
	return id + " " + status + ": " + reason
}

// Ready reports whether the agent is ready for traffic, and the functions
// that hold it back: it is not draining, and every function has its
// min_instances running or is marked readiness: optional. The API's
// answering is the rest of readiness (it listens).
func (a *Agent) Ready() (bool, []api.FunctionHealth) {
	ready := !a.isDraining()
	var waiting []api.FunctionHealth
	now := time.Now()
	for _, name := range a.order {
		p := a.pools[name]
		h := functionHealth(p.fn, p.status(), now)
		if !h.Ready {
			ready = false
			waiting = append(waiting, api.FunctionHealth{Function: name, Health: h.State, Reason: h.Reason,
				Running: h.Running, MinInstances: p.fn.MinInstances})
		}
	}
	return ready, waiting
}

// handleLive answers /livez: 200 while the process serves its API, even
// while draining (restarting a draining agent would cut its invocations
// short).
func (a *Agent) handleLive(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
}

// handleReady answers /readyz: 200 when Ready, else 503 naming the
// functions that are not.
func (a *Agent) handleReady(w http.ResponseWriter, r *http.Request) {
	ready, waiting := a.Ready()
	switch {
	case a.isDraining():
		writeJSON(w, http.StatusServiceUnavailable, api.Health{Status: "shutting_down"})
	case !ready:
		writeJSON(w, http.StatusServiceUnavailable, api.Health{Status: "not_ready", Waiting: waiting})
	default:
		writeJSON(w, http.StatusOK, api.Health{Status: "ready"})
	}
}

// updateGRPCHealth sets the gRPC health statuses: "" follows Ready, and
// spear.function.<name> is SERVING while the function can take
// invocations: an instance runs, or none is needed (no_instances with
// min_instances 0: an invocation starts one). grpc's health server tells
// watchers only of changes.
func (a *Agent) updateGRPCHealth(s *health.Server) {
	if a.isDraining() {
		return // Run's Shutdown has set every service NOT_SERVING
	}
	status := func(ok bool) healthpb.HealthCheckResponse_ServingStatus {
		if ok {
			return healthpb.HealthCheckResponse_SERVING
		}
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	now := time.Now()
	for _, name := range a.order {
		p := a.pools[name]
		h := functionHealth(p.fn, p.status(), now)
		ok := h.Running > 0 || (h.State == HealthNoInstances && p.fn.MinInstances == 0)
		s.SetServingStatus(GRPCHealthPrefix+name, status(ok))
	}
	ready, _ := a.Ready()
	s.SetServingStatus("", status(ready))
}

// watchHealth keeps s up to date until ctx ends.
func (a *Agent) watchHealth(ctx context.Context, s *health.Server) {
	t := time.NewTicker(healthPoll)
	defer t.Stop()
	for {
		a.updateGRPCHealth(s)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
