package agent

import (
	"context"
	"math"
	"slices"
	"time"
)

// autoscaler is the concurrency-target scaler of a function, after
// Knative's: every tick it samples the function's concurrency (in-flight
// plus queued invocations) and wants
//
//	desired = ceil(average over the stable window / target_concurrency)
//
// When the same over the short panic window reaches panic_threshold times
// the ready instances, it panics: it scales on the panic window's figure
// and never down, until a whole stable window has passed without cause.
// The result is clamped to [min_instances, max_instances]; the pool starts
// instances up to it and stops idle ones above it. Without a target the
// pool scales on demand only (a start when invocations find no free slot).
type autoscaler struct {
	target     float64
	stable     time.Duration
	panicSpan  time.Duration
	threshold  float64
	samples    []sample // within the stable window, oldest first
	desired    int
	panicking  bool
	panicSince time.Time // when the panic was last confirmed
}

type sample struct {
	at          time.Time
	concurrency float64
}

func newAutoscaler(fn FunctionConfig) autoscaler {
	return autoscaler{target: fn.TargetConcurrency, stable: fn.StableWindow.D(), panicSpan: fn.PanicWindow.D(), threshold: fn.PanicThreshold}
}

// average is the mean concurrency over the samples of the last span.
func (a *autoscaler) average(now time.Time, span time.Duration) float64 {
	sum, n := 0.0, 0
	for _, s := range slices.Backward(a.samples) {
		if now.Sub(s.at) > span {
			break
		}
		sum += s.concurrency
		n++
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// observe records a sample and returns the instance count the function
// should have, given how many are ready now.
func (a *autoscaler) observe(now time.Time, concurrency float64, ready int) int {
	if a.target <= 0 {
		return 0
	}
	a.samples = append(a.samples, sample{now, concurrency})
	drop := 0
	for drop < len(a.samples) && now.Sub(a.samples[drop].at) > a.stable {
		drop++
	}
	a.samples = slices.Delete(a.samples, 0, drop)
	stable := int(math.Ceil(a.average(now, a.stable) / a.target))
	burst := int(math.Ceil(a.average(now, a.panicSpan) / a.target))
	if float64(burst) >= a.threshold*float64(max(ready, 1)) && burst > ready {
		if !a.panicking {
			a.panicking = true
		}
		a.panicSince = now
	} else if a.panicking && now.Sub(a.panicSince) >= a.stable {
		a.panicking = false
	}
	want := stable
	if a.panicking {
		want = max(burst, a.desired, stable) // never down while panicking
	}
	a.desired = want
	return want
}

// tickEvery is how often the pool's ticker runs: once a second, or
// faster for a short idle_timeout or panic window.
func (fn FunctionConfig) tickEvery() time.Duration {
	d := time.Second
	if t := fn.IdleTimeout.D(); t > 0 {
		d = min(d, t/4)
	}
	if fn.TargetConcurrency > 0 {
		d = min(d, fn.PanicWindow.D()/6)
	}
	return max(d, 10*time.Millisecond)
}

// tick runs the pool's periodic work until shutdown: the autoscaler,
// idle timeouts, the outlier checks and the connection targets.
func (p *pool) tick() {
	defer p.wg.Done()
	t := time.NewTicker(p.fn.tickEvery())
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		if !p.closed {
			now := p.now()
			p.dirty = true // statuses the pool hears of by no event (degraded, say)
			p.scaleLocked(now)
			p.checkOutliersLocked(now)
			p.reconcileLocked()
			p.broadcastLocked()
		}
		p.mu.Unlock()
		p.tuneConnections()
	}
}

// scaleLocked runs the autoscaler and stops the instances above what the
// function needs: idle past idle_timeout, or idle and above the
// autoscaler's figure.
func (p *pool) scaleLocked(now time.Time) {
	inflight := 0
	for _, m := range p.members {
		inflight += m.ep.InFlight()
	}
	desired := p.scaler.observe(now, float64(inflight+p.waiting), p.readyLocked())
	p.scaler.desired = min(desired, p.fn.MaxInstances)
	keep := max(p.fn.MinInstances, p.waiting)
	if p.fn.TargetConcurrency > 0 {
		keep = max(keep, p.scaler.desired)
	}
	live := 0
	for _, m := range p.members {
		if !m.leaving {
			live++
		}
	}
	// Newest first: the oldest instances are the warmest.
	for _, m := range slices.Backward(p.members) {
		if live <= keep {
			break
		}
		if m.leaving || m.ep.InFlight() > 0 {
			continue
		}
		idle := now.Sub(m.lastUsed)
		switch {
		case p.fn.TargetConcurrency > 0 && !p.scaler.panicking && live > p.scaler.desired && idle >= p.fn.tickEvery():
			p.stopLocked(m, "scaled down")
		case p.fn.IdleTimeout > 0 && idle >= p.fn.IdleTimeout.D():
			p.stopLocked(m, "idle for "+idle.Round(time.Millisecond).String())
		default:
			continue
		}
		live--
	}
}

// Connection tuning of connections: auto. An instance whose invocations
// per connection have stood at autoGrowAt or more for autoSustain ticks
// is asked for one more connection, up to its cap less one (a place kept
// for a reconnection); one whose extra connections carried nothing for
// autoShrinkAfter gives one back.
const (
	autoGrowAt      = 8
	autoSustain     = 3
	autoShrinkAfter = 30 * time.Second
)

// connTune is a member's connection tuning state, guarded by pool.mu.
type connTune struct {
	busyTicks int       // ticks in a row with contention
	lastBusy  time.Time // when it last had more than one connection's worth
	want      int       // connections asked for
}

// tuneConnections adjusts the connections of instances under connections:
// auto. It runs on the ticker, outside the pool's lock, since asking an
// instance is a request.
func (p *pool) tuneConnections() {
	if !p.fn.Connections.Auto {
		return
	}
	type change struct {
		m *member
		n int
	}
	var changes []change
	p.mu.Lock()
	now := p.now()
	ceiling := max(p.fn.Channel.MaxConnections-1, 1)
	for _, m := range p.members {
		if m.leaving {
			continue
		}
		t := &m.conns
		t.want = max(t.want, 1)
		per := float64(m.ep.InFlight()) / float64(t.want)
		switch {
		case per >= autoGrowAt:
			t.lastBusy = now
			if t.busyTicks++; t.busyTicks >= autoSustain && t.want < ceiling {
				t.busyTicks = 0
				changes = append(changes, change{m, t.want + 1})
			}
		case t.want > 1 && m.ep.InFlight() <= (t.want-1)*autoGrowAt/2 && now.Sub(t.lastBusy) >= autoShrinkAfter:
			t.busyTicks, t.lastBusy = 0, now
			changes = append(changes, change{m, t.want - 1})
		default:
			if m.ep.InFlight() > autoGrowAt/2 {
				t.lastBusy = now
			}
			t.busyTicks = 0
		}
	}
	p.mu.Unlock()
	for _, c := range changes {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		n, err := c.m.inst.Channel().SetConnections(ctx, c.n)
		cancel()
		p.mu.Lock()
		c.m.conns.want = n
		p.mu.Unlock()
		if err != nil {
			p.log.Debug("connection count not changed", "instance", c.m.inst.ID().String(), "err", err)
		} else {
			p.log.Info("connections", "instance", c.m.inst.ID().String(), "count", n)
		}
	}
}
