package agent

import (
	"slices"
	"time"

	"github.com/spear-go/spear/runtime"
)

// PoolStatus is a function pool's state as data: what the API's
// functions and instances lists, the function's health, the metrics and
// the dashboard read. New pool state belongs here, so that every reader
// sees it.
type PoolStatus struct {
	Function string
	Balancer string
	// Live instances, of which Ready are balanced to now (connected, not
	// ejected, not leaving); Starting are being started; Queued
	// invocations wait for a slot; InFlight run.
	Live, Ready, Starting, Queued, InFlight int
	// Desired is the autoscaler's figure (0 without target_concurrency);
	// Panicking says it scales on the panic window.
	Desired   int
	Panicking bool
	// FailedStarts counts the starts that failed in a row; at
	// crashLoopAfter the function is crash-looping, and CrashLoop is set
	// until a start succeeds.
	FailedStarts int
	CrashLoop    *CrashLoopStatus
	// RestartsOwed replacements of instances that stopped unasked are due
	// at RestartAt; Restarts counts the replacements owed since the agent
	// started.
	RestartsOwed int
	RestartAt    time.Time
	Restarts     int
	// LastFailure says why the last start failed or the last instance
	// stopped unasked, and when.
	LastFailure   string
	LastFailureAt time.Time
	// Ejections counts instances ejected; EjectionsRefusedLast the
	// ejections not done because the instance was the last ready one,
	// EjectionsRefusedCap those over max_ejected_percent.
	Ejections, EjectionsRefusedLast, EjectionsRefusedCap int
	// Members are the live instances, oldest first.
	Members []MemberStatus
	// Stopped are the recently stopped instances, oldest first.
	Stopped []runtime.Instance
}

// CrashLoopStatus is a crash-looping function's back-off: its starts
// failed Failures times in a row, and the next is tried at RetryAt (in
// the past while that start is under way or waits for an invocation).
type CrashLoopStatus struct {
	Failures int
	RetryAt  time.Time
}

// An instance's standing with outlier ejection: the Health of a
// MemberStatus and of an api.Instance. A function's health
// (HealthServing, ...) is another thing, aggregated in health.go.
const (
	InstanceOK        = "ok"
	InstanceEjected   = "ejected"   // out of balancing until EjectedUntil
	InstanceProbation = "probation" // readmitted, one invocation at a time
)

// MemberStatus is a live instance's place in its pool.
type MemberStatus struct {
	Instance runtime.Instance
	InFlight int
	// Leaving is set while the pool stops the instance on purpose.
	Leaving bool
	// Health is InstanceOK, InstanceEjected (until EjectedUntil, for
	// Reason) or InstanceProbation.
	Health       string
	EjectedUntil time.Time
	Reason       string
	// Latency is the balancer's latency average.
	Latency time.Duration
	// LastError is the last error an invocation on the instance ended
	// with, at LastErrorAt.
	LastError   string
	LastErrorAt time.Time
}

// status returns the pool's state.
func (p *pool) status() PoolStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	st := PoolStatus{
		Function: p.fn.Name, Balancer: p.fn.Balancer,
		Live: len(p.members), Ready: p.readyLocked(), Starting: p.starting, Queued: p.waiting,
		Desired: p.scaler.desired, Panicking: p.scaler.panicking,
		FailedStarts: p.crash.failures,
		RestartsOwed: p.restarts.owed, RestartAt: p.restarts.at, Restarts: p.restarts.total,
		LastFailure: p.lastFailure, LastFailureAt: p.lastFailureAt,
		Ejections: p.ejected.total, EjectionsRefusedLast: p.ejected.refusedLast, EjectionsRefusedCap: p.ejected.refusedCap,
		Stopped: slices.Clone(p.stopped),
	}
	if p.restarts.owed == 0 {
		st.RestartAt = time.Time{}
	}
	if p.crash.failures >= crashLoopAfter {
		st.CrashLoop = &CrashLoopStatus{Failures: p.crash.failures, RetryAt: p.crash.retryAt}
	}
	for _, m := range p.members {
		ms := MemberStatus{Instance: m.inst, InFlight: m.ep.InFlight(), Leaving: m.leaving, Health: InstanceOK,
			Latency: m.ep.Latency(), LastError: m.lastErr, LastErrorAt: m.lastErrAt}
		switch s := m.standing; {
		case s.ejectedAt(now):
			ms.Health, ms.EjectedUntil, ms.Reason = InstanceEjected, s.until, s.reason
		case s.probation > 0:
			ms.Health, ms.Reason = InstanceProbation, s.reason
		}
		st.InFlight += ms.InFlight
		st.Members = append(st.Members, ms)
	}
	return st
}
