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

// A function's health states, worst first (docs/observability.md). An
// instance's standing with outlier ejection (InstanceOK, ...) is another
// thing; it counts here.
const (
	// HealthCrashLooping: its starts keep failing (crashLoopAfter in a
	// row, and none has succeeded since): the pool's crash-loop back-off.
	HealthCrashLooping = "crash_looping"
	// HealthNoInstances: no instance is ready. With min_instances 0 and
	// nothing live that is the resting state; the next invocation starts
	// one.
	HealthNoInstances = "no_instances"
	// HealthDegraded: instances are ready, but fewer than min_instances,
	// or some live ones are ejected, on probation, unhealthy or
	// disconnected.
	HealthDegraded = "degraded"
	// HealthServing: min_instances are ready and every live instance is
	// well.
	HealthServing = "serving"
)

// healthStates are the values of the "state" label of
// spearlet_function_health.
var healthStates = []string{HealthServing, HealthDegraded, HealthCrashLooping, HealthNoInstances}

// GRPCHealthPrefix starts the gRPC health service name of each function:
// "spear.function.<name>".
const GRPCHealthPrefix = "spear.function."

// healthPoll is how often Run refreshes the gRPC health statuses.
const healthPoll = 500 * time.Millisecond

// fnHealth is a function's aggregated health.
type fnHealth struct {
	State  string
	Reason string
	// ReadinessMet: min_instances are ready, or readiness is optional.
	ReadinessMet bool
}

// functionHealth aggregates a function's health from its pool's state:
// the crash loop, the ready instances against min_instances, and the
// live instances that are not well. Instances being stopped on purpose
// do not count.
func functionHealth(fn FunctionConfig, st PoolStatus) fnHealth {
	var sick []string
	for _, m := range st.Members {
		if m.Leaving {
			continue
		}
		info := m.Instance.Info()
		switch {
		case m.Health != InstanceOK:
			sick = append(sick, describeSick(info.ID.String(), m.Health, m.Reason))
		case info.Status == runtime.StatusStarting:
		case info.Status == runtime.StatusRunning && !m.Instance.Channel().IsConnected():
			sick = append(sick, describeSick(info.ID.String(), "disconnected", ""))
		case info.Status != runtime.StatusRunning:
			sick = append(sick, describeSick(info.ID.String(), string(info.Status), info.Reason))
		}
	}
	h := fnHealth{ReadinessMet: fn.Readiness == ReadinessOptional || st.Ready >= fn.MinInstances}
	switch {
	case st.CrashLoop != nil:
		h.State = HealthCrashLooping
		h.Reason = fmt.Sprintf("%d starts failed in a row", st.CrashLoop.Failures)
	case st.Ready == 0:
		h.State = HealthNoInstances
		switch {
		case st.Starting > 0:
			h.Reason = fmt.Sprintf("%d starting", st.Starting)
		case len(sick) > 0:
			h.Reason = sickReason(sick)
		case st.RestartsOwed > 0:
			h.Reason = fmt.Sprintf("%d restarts waiting out their back-off", st.RestartsOwed)
		case fn.MinInstances == 0:
			h.Reason = "none needed (min_instances 0); the next invocation starts one"
		case st.LastFailure != "":
			h.Reason = st.LastFailure
		}
	case st.Ready < fn.MinInstances:
		h.State = HealthDegraded
		h.Reason = fmt.Sprintf("%d of min_instances %d ready", st.Ready, fn.MinInstances)
		if len(sick) > 0 {
			h.Reason += "; " + sickReason(sick)
		}
	case len(sick) > 0:
		h.State = HealthDegraded
		h.Reason = sickReason(sick)
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

// sickReason names the first instance that is not well, and counts the
// others.
func sickReason(sick []string) string {
	if len(sick) == 1 {
		return sick[0]
	}
	return fmt.Sprintf("%s (and %d more)", sick[0], len(sick)-1)
}

// Ready reports whether the agent is ready for traffic, and the functions
// that hold it back: it is not draining, and every function has its
// min_instances ready or is marked readiness: optional. The API's
// answering is the rest of readiness (it listens).
func (a *Agent) Ready() (bool, []api.FunctionHealth) {
	return readiness(a.isDraining(), a.Functions())
}

// readiness is Ready of a functions list already made.
func readiness(draining bool, fns []api.Function) (bool, []api.FunctionHealth) {
	ready := !draining
	var waiting []api.FunctionHealth
	for _, f := range fns {
		if !f.ReadinessMet {
			ready = false
			waiting = append(waiting, api.FunctionHealth{Function: f.Name, Health: f.Health, Reason: f.HealthReason,
				Ready: f.Ready, MinInstances: f.MinInstances, LastError: f.LastError, NextRetry: f.NextRetry})
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
// invocations: an instance is ready, or none is needed (no_instances with
// min_instances 0: an invocation starts one). grpc's health server tells
// watchers only of changes. A function that a reload removed (served
// holds the names served before) turns NOT_SERVING.
func (a *Agent) updateGRPCHealth(s *health.Server, served map[string]bool) {
	if a.isDraining() {
		return // Run's Shutdown has set every service NOT_SERVING
	}
	status := func(ok bool) healthpb.HealthCheckResponse_ServingStatus {
		if ok {
			return healthpb.HealthCheckResponse_SERVING
		}
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	now := map[string]bool{}
	fns := a.Functions()
	for _, f := range fns {
		ok := f.Ready > 0 || (f.Health == HealthNoInstances && f.MinInstances == 0)
		s.SetServingStatus(GRPCHealthPrefix+f.Name, status(ok))
		now[f.Name] = true
	}
	for name := range served {
		if !now[name] {
			s.SetServingStatus(GRPCHealthPrefix+name, status(false))
			delete(served, name)
		}
	}
	for name := range now {
		served[name] = true
	}
	ready, _ := readiness(false, fns)
	s.SetServingStatus("", status(ready))
}

// watchHealth keeps s up to date until ctx ends.
func (a *Agent) watchHealth(ctx context.Context, s *health.Server) {
	t := time.NewTicker(healthPoll)
	defer t.Stop()
	served := map[string]bool{}
	for {
		a.updateGRPCHealth(s, served)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
