package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spear-go/spear"
)

// Outlier ejection, per instance. A function's health, aggregated from
// its instances' (ejection included), is health.go's.

// standing is a member's standing with outlier ejection. An instance that
// fails consecutive_errors invocations in a row with instance-side
// errors, whose latency or heartbeat round trip stands latency_factor
// times above its peers' median, or that misses heartbeats, is ejected:
// out of balancing for a back-off (base_ejection doubling with each
// ejection in a row, up to max_ejection). Then it is readmitted on
// probation: one invocation at a time, until it has served probation
// successes; one failure on probation ejects it again. Ejection never
// takes the last ready instance, nor more than max_ejected_percent.
type standing struct {
	consecutive int       // instance-side failures in a row
	ejections   int       // ejections in a row, for the back-off
	until       time.Time // ejected until then
	probation   int       // successes still owed on probation
	reason      string    // why it was last ejected
}

func (s *standing) ejectedAt(now time.Time) bool { return now.Before(s.until) }

// ejectionStats count ejections for the metrics and the API.
type ejectionStats struct {
	total       int // instances ejected
	refusedLast int // ejections not done: the instance was the last ready one
	refusedCap  int // ejections not done: max_ejected_percent reached
}

// instanceFault reports whether an invocation's error counts against the
// instance that ran it: a lost or broken connection, an answer that broke
// the protocol, a timeout, or the instance's own failure (INTERNAL,
// UNAVAILABLE, ...). The caller's doing does not count: a cancellation,
// an unknown method, a payload too large.
func instanceFault(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if re, ok := errors.AsType[*spear.RemoteError](err); ok {
		switch re.Code {
		case spear.CodeNotFound, spear.CodeTooLarge, spear.CodeCanceled:
			return false
		}
	}
	return true
}

// observeLocked updates m's standing with an invocation's outcome.
func (p *pool) observeLocked(m *member, now time.Time, err error) {
	if p.fn.Outlier.Disabled {
		return
	}
	s := &m.standing
	switch {
	case err == nil:
		s.consecutive = 0
		if s.probation > 0 {
			if s.probation--; s.probation == 0 {
				s.ejections = max(s.ejections-1, 0)
				p.dirty = true // full capacity again
				p.log.Info("instance passed probation", "instance", m.inst.ID().String())
			}
		}
	case instanceFault(err):
		s.consecutive++
		switch {
		case s.probation > 0:
			p.ejectLocked(m, now, fmt.Sprintf("failed on probation: %v", err))
		case s.consecutive >= p.fn.Outlier.ConsecutiveErrors:
			p.ejectLocked(m, now, fmt.Sprintf("%d instance-side failures in a row, the last: %v", s.consecutive, err))
		}
	}
}

// ejectLocked ejects m, unless it is the last ready instance or the cap
// on ejected instances is reached. It reports whether it did.
func (p *pool) ejectLocked(m *member, now time.Time, reason string) bool {
	s := &m.standing
	if m.leaving || s.ejectedAt(now) {
		return false
	}
	ready, ejected := 0, 0
	for _, x := range p.members {
		switch {
		case x.standing.ejectedAt(now):
			ejected++
		case x != m && p.eligibleLocked(x, now):
			ready++
		}
	}
	if ready == 0 {
		p.ejected.refusedLast++
		p.met.ejections.WithLabelValues(p.fn.Name, "refused_last").Inc()
		p.log.Warn("not ejecting the last ready instance", "instance", m.inst.ID().String(), "reason", reason)
		s.consecutive = 0
		return false
	}
	if limit := max(1, len(p.members)*p.fn.Outlier.MaxEjectedPercent/100); ejected >= limit {
		p.ejected.refusedCap++
		p.met.ejections.WithLabelValues(p.fn.Name, "refused_cap").Inc()
		p.log.Warn("not ejecting: max_ejected_percent reached", "instance", m.inst.ID().String(), "ejected", ejected, "reason", reason)
		return false
	}
	o := p.fn.Outlier
	d := doubled(o.BaseEjection.D(), o.MaxEjection.D(), s.ejections)
	s.until, s.reason = now.Add(d), reason
	s.ejections++
	s.probation = o.Probation
	s.consecutive = 0
	p.ejected.total++
	p.met.ejections.WithLabelValues(p.fn.Name, "ejected").Inc()
	p.dirty = true
	p.scheduleLocked(s.until)
	p.log.Warn("instance ejected", "instance", m.inst.ID().String(), "for", d, "reason", reason)
	return true
}

// checkOutliersLocked ejects, on the ticker, the ready instances whose
// heartbeats go unanswered, and, with latency_factor set, those whose
// latency average or heartbeat round trip stands that many times above
// the median of their peers'.
func (p *pool) checkOutliersLocked(now time.Time) {
	o := p.fn.Outlier
	if o.Disabled {
		return
	}
	var ready []*member
	for _, m := range p.members {
		if p.eligibleLocked(m, now) {
			ready = append(ready, m)
		}
	}
	for _, m := range ready {
		hb := m.inst.Channel().Heartbeat()
		if hb.Misses >= 2 {
			p.ejectLocked(m, now, fmt.Sprintf("%d heartbeat intervals without a frame", hb.Misses))
			continue
		}
		if o.LatencyFactor <= 0 || len(ready) < 2 {
			continue
		}
		lat := func(x *member) time.Duration { return x.ep.Latency() }
		rtt := func(x *member) time.Duration { return x.inst.Channel().Heartbeat().RTT }
		for _, signal := range []struct {
			name string
			of   func(*member) time.Duration
		}{{"latency", lat}, {"heartbeat round trip", rtt}} {
			v, median := signal.of(m), peerMedian(ready, m, signal.of)
			if v > 0 && median > 0 && float64(v) > o.LatencyFactor*float64(median) {
				if p.ejectLocked(m, now, fmt.Sprintf("%s %s is over %g times its peers' median %s", signal.name, v, o.LatencyFactor, median)) {
					break
				}
			}
		}
	}
}

// peerMedian is the median of of over the members other than m that have
// a figure.
func peerMedian(ms []*member, m *member, of func(*member) time.Duration) time.Duration {
	var vs []time.Duration
	for _, x := range ms {
		if v := of(x); x != m && v > 0 {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}
