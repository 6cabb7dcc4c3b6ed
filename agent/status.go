package agent

import (
	"slices"
	"time"

	"github.com/spear-go/spear/runtime"
)

// PoolStatus is a function pool's state as data: what the API's
// functions list shows, and what the metrics read.
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
	// CrashLoop is set while the function is in crash-loop back-off.
	CrashLoop *CrashLoopStatus
	// RestartsOwed replacements of instances that stopped unasked are due
	// at RestartAt.
	RestartsOwed int
	RestartAt    time.Time
	// Ejections counts instances ejected; EjectionsRefusedLast the
	// ejections not done because the instance was the last ready one,
	// EjectionsRefusedCap those over max_ejected_percent.
	Ejections, EjectionsRefusedLast, EjectionsRefusedCap int
	// Members are the live instances.
	Members []MemberStatus
	// Stopped are the recently stopped instances, oldest first.
	Stopped []runtime.Instance
}

// CrashLoopStatus says why and until when a function is in crash-loop
// back-off.
type CrashLoopStatus struct {
	Failures  int
	LastError string
	LastAt    time.Time
	RetryAt   time.Time
}

// MemberStatus is a live instance's place in its pool.
type MemberStatus struct {
	Instance runtime.Instance
	InFlight int
	// Health is "ok", "ejected" (until EjectedUntil, for Reason) or
	// "probation".
	Health       string
	EjectedUntil time.Time
	Reason       string
	// Latency is the balancer's latency average.
	Latency time.Duration
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
		RestartsOwed: p.restarts.owed, RestartAt: p.restarts.at,
		Ejections: p.ejected.total, EjectionsRefusedLast: p.ejected.refusedLast, EjectionsRefusedCap: p.ejected.refusedCap,
		Stopped: slices.Clone(p.stopped),
	}
	if p.restarts.owed == 0 {
		st.RestartAt = time.Time{}
	}
	if p.crash.looping(now) {
		st.CrashLoop = &CrashLoopStatus{Failures: p.crash.failures, LastError: p.crash.lastErr.Error(), LastAt: p.crash.lastAt, RetryAt: p.crash.retryAt}
	}
	for _, m := range p.members {
		ms := MemberStatus{Instance: m.inst, InFlight: m.ep.InFlight(), Health: "ok", Latency: m.ep.Latency()}
		switch h := m.health; {
		case h.ejectedAt(now):
			ms.Health, ms.EjectedUntil, ms.Reason = "ejected", h.until, h.reason
		case h.probation > 0:
			ms.Health, ms.Reason = "probation", h.reason
		}
		st.InFlight += ms.InFlight
		st.Members = append(st.Members, ms)
	}
	return st
}
