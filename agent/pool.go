package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime"
)

// keepStopped is how many stopped instances a pool remembers, so that the
// API can still show them (with the reason) and their last logs.
const keepStopped = 16

// reconnectPoll is how often a waiter looks again while an instance's
// channel is reconnecting.
const reconnectPoll = 20 * time.Millisecond

// pool holds the instances of one function.
//
// Goroutines: one per instance start (on demand; to keep min_instances;
// or, after a backoff, to replace an instance that stopped unasked), which
// retries with backoff when the start keeps the pool's floor and the
// restart policy is on-failure; and one watcher per live instance, waiting
// on its Done. All belong to wg. shutdown cancels ctx, which aborts starts
// and pending backoffs; watchers end when their instance has stopped.
//
// Waiters for capacity block on changed, which is closed (and replaced) on
// every change that may free capacity: an instance joined or left, an
// invocation ended, a start failed, the pool closed.
type pool struct {
	// Immutable after newPool.
	fn     FunctionConfig
	rt     runtime.Runtime
	set    runtime.Settings // what every instance of fn gets
	log    *slog.Logger
	met    *metrics
	ctx    context.Context // ends at shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex // guards the fields below
	closed   bool
	members  []*member          // live instances, oldest first
	pending  int                // starts in progress or waiting out a backoff; they count toward max_instances
	waiting  int                // acquire calls waiting for a slot
	stopped  []runtime.Instance // recently stopped, oldest first, at most keepStopped
	changed  chan struct{}
	failures int // consecutive unasked stops, for the backoff
	// For status: restarts scheduled, and the last failed start or
	// unasked stop.
	restarts      int
	lastFailure   string
	lastFailureAt time.Time
}

// member is a live instance of the pool.
type member struct {
	inst    runtime.Instance
	started time.Time
	// Guarded by pool.mu.
	inflight  int
	leaving   bool // being stopped on purpose: never picked, never restarted
	lastErr   string
	lastErrAt time.Time
}

// attempt is one instance start; done is closed when inst and err are set.
type attempt struct {
	done chan struct{}
	inst runtime.Instance
	err  error
}

func newPool(fn FunctionConfig, rt runtime.Runtime, log *slog.Logger, met *metrics) *pool {
	p := &pool{
		fn:      fn,
		rt:      rt,
		set:     fn.settings(),
		log:     log.With("function", fn.Name, "runtime", rt.Type().String()),
		met:     met,
		changed: make(chan struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.mu.Lock()
	p.fillLocked()
	p.mu.Unlock()
	return p
}

// acquire returns a running instance with a free invocation slot. When
// none is free it waits for one until ctx ends, and starts an instance if
// the pool is under max_instances and the starts already under way cannot
// serve every waiter. The caller must release the member.
func (p *pool) acquire(ctx context.Context) (*member, error) {
	var own *attempt // the start this caller asked for, if any
	waiting := false // counted in p.waiting
	var cold *coldStart
	defer func() {
		if waiting {
			p.mu.Lock()
			p.waiting--
			p.mu.Unlock()
		}
		cold.end(own)
	}()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrShuttingDown
		}
		if m := p.pickLocked(); m != nil {
			m.inflight++
			p.mu.Unlock()
			return m, nil
		}
		if !waiting {
			waiting = true
			p.waiting++
		}
		if own == nil && len(p.members)+p.pending < p.fn.MaxInstances && p.pending*p.fn.MaxConcurrency < p.waiting {
			own = p.startLocked(0, false)
			cold = p.met.coldStart(ctx, p.fn.Name, p.rt.Type())
		}
		changed, live, reconnecting := p.changed, len(p.members), p.reconnectingLocked()
		p.mu.Unlock()

		var ownDone <-chan struct{}
		if own != nil {
			ownDone = own.done
		}
		var recheck <-chan time.Time
		if reconnecting {
			// A channel reconnecting (a wasm instance being reset, say)
			// broadcasts nothing; look again shortly.
			t := time.NewTimer(reconnectPoll)
			defer t.Stop()
			recheck = t.C
		}
		select {
		case <-changed:
		case <-recheck:
		case <-ownDone:
		case <-ctx.Done():
			if ctx.Err() == context.Canceled {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: function %s: no instance was free before the deadline (%d live, max_instances %d, max_concurrency %d)",
				ErrNoInstance, p.fn.Name, live, p.fn.MaxInstances, p.fn.MaxConcurrency)
		}
		if own != nil && closed(own.done) {
			cold.end(own)
			if own.err != nil {
				return nil, fmt.Errorf("%w: function %s: %w", ErrNoInstance, p.fn.Name, own.err)
			}
			own = nil // started; someone may have taken it, so look again
		}
	}
}

// pickLocked returns the running instance with the fewest in-flight
// invocations under max_concurrency, or nil.
func (p *pool) pickLocked() *member {
	var best *member
	for _, m := range p.members {
		if m.leaving || m.inflight >= p.fn.MaxConcurrency || (best != nil && m.inflight >= best.inflight) {
			continue
		}
		if s := m.inst.Info().Status; (s == runtime.StatusRunning || s == runtime.StatusDegraded) && m.inst.Channel().IsConnected() {
			best = m
		}
	}
	return best
}

// reconnectingLocked reports whether a live instance with a free slot is
// only waiting for its channel to reconnect.
func (p *pool) reconnectingLocked() bool {
	for _, m := range p.members {
		if !m.leaving && m.inflight < p.fn.MaxConcurrency && !m.inst.Channel().IsConnected() {
			return true
		}
	}
	return false
}

// release gives back the invocation slot acquire took.
func (p *pool) release(m *member) {
	p.mu.Lock()
	m.inflight--
	p.broadcastLocked()
	p.mu.Unlock()
}

func (p *pool) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// fillLocked starts instances until the pool has min_instances, counting
// those being started.
func (p *pool) fillLocked() {
	for n := len(p.members) + p.pending; n < p.fn.MinInstances && !p.closed; n++ {
		p.startLocked(0, true)
	}
}

// startLocked starts an instance after delay. keep marks a start that
// keeps the pool's floor (min_instances, or a replacement): under the
// on-failure policy it is retried with backoff until it succeeds.
func (p *pool) startLocked(delay time.Duration, keep bool) *attempt {
	p.pending++
	a := &attempt{done: make(chan struct{})}
	p.wg.Add(1)
	go p.start(a, delay, keep && p.fn.Restart.Policy == RestartOnFailure)
	return a
}

func (p *pool) start(a *attempt, delay time.Duration, retry bool) {
	defer p.wg.Done()
	for {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
				p.finish(a, nil, ErrShuttingDown)
				return
			}
		}
		begun := time.Now()
		id, inst, err := p.startNamed()
		if err == nil {
			p.met.started(p.fn.Name, p.rt.Type(), time.Since(begun))
			p.log.Info("instance started", "instance", id.String())
			p.finish(a, inst, nil)
			return
		}
		p.met.starts.WithLabelValues(p.fn.Name, "error").Inc()
		p.mu.Lock()
		p.lastFailure, p.lastFailureAt = "start failed: "+err.Error(), time.Now()
		p.mu.Unlock()
		if !retry || p.ctx.Err() != nil {
			p.log.Warn("instance start failed", "instance", id.String(), "err", err)
			p.finish(a, nil, err)
			return
		}
		p.mu.Lock()
		delay = p.backoffLocked()
		p.mu.Unlock()
		p.log.Warn("instance start failed; retrying", "instance", id.String(), "err", err, "backoff", delay)
	}
}

// nameTries bounds the names a start tries when the runtime finds each
// taken (another agent's instance in a shared namespace).
const nameTries = 3

// startNamed starts an instance under a fresh random name, and under
// another when the runtime reports the name taken.
func (p *pool) startNamed() (spear.InstanceID, runtime.Instance, error) {
	for try := 1; ; try++ {
		id := spear.InstanceID{Runtime: p.rt.Type(), Name: p.fn.Name + "-" + randomSuffix()}
		inst, err := p.rt.Start(p.ctx, id, p.set, p.fn.Spec)
		if err == nil || try == nameTries || !errors.Is(err, spear.ErrInvalidInstanceID) || p.ctx.Err() != nil {
			return id, inst, err
		}
		p.log.Info("instance name taken; trying another", "instance", id.String(), "err", err)
	}
}

// finish records a start's result and wakes the waiters.
func (p *pool) finish(a *attempt, inst runtime.Instance, err error) {
	p.mu.Lock()
	p.pending--
	if inst != nil && p.closed {
		// Started while the pool was shutting down: stop it at once.
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), p.stopTimeout())
		_ = p.rt.Stop(ctx, inst)
		cancel()
		p.mu.Lock()
		inst, err = nil, ErrShuttingDown
	}
	if inst != nil {
		m := &member{inst: inst, started: time.Now()}
		p.members = append(p.members, m)
		p.wg.Add(1)
		go p.watch(m)
	}
	a.inst, a.err = inst, err
	p.broadcastLocked()
	p.mu.Unlock()
	close(a.done)
}

// watch waits for an instance to stop, removes it, and replaces it if it
// stopped unasked and the policy says so.
func (p *pool) watch(m *member) {
	defer p.wg.Done()
	<-m.inst.Done()
	info := m.inst.Info()
	p.mu.Lock()
	p.members = slices.DeleteFunc(p.members, func(x *member) bool { return x == m })
	p.stopped = append(p.stopped, m.inst)
	if len(p.stopped) > keepStopped {
		p.stopped = slices.Delete(p.stopped, 0, len(p.stopped)-keepStopped)
	}
	unasked := !m.leaving && !p.closed
	if unasked {
		p.lastFailure, p.lastFailureAt = "stopped unasked: "+info.Reason, time.Now()
	}
	var delay time.Duration
	restart := unasked && p.fn.Restart.Policy == RestartOnFailure
	switch {
	case restart:
		p.restarts++
		if time.Since(m.started) >= p.fn.Restart.MaxBackoff.D() {
			p.failures = 0 // it ran well for a while: this is a fresh failure
		}
		delay = p.backoffLocked()
		p.startLocked(delay, true)
	case !unasked:
		p.fillLocked() // a deleted instance is replaced only to keep min_instances
	}
	p.broadcastLocked()
	p.mu.Unlock()
	if unasked {
		if restart {
			p.met.restarts.WithLabelValues(p.fn.Name).Inc()
		}
		p.log.Warn("instance stopped unexpectedly", "instance", info.ID.String(), "reason", info.Reason,
			"restart", restart, "backoff", delay)
	} else {
		p.log.Info("instance stopped", "instance", info.ID.String(), "reason", info.Reason)
	}
}

// backoffLocked returns the delay before the next restart and counts the
// failure: initial_backoff doubling per consecutive failure, capped at
// max_backoff.
func (p *pool) backoffLocked() time.Duration {
	d, limit := p.fn.Restart.InitialBackoff.D(), p.fn.Restart.MaxBackoff.D()
	for i := 0; i < p.failures && d < limit; i++ {
		d *= 2
	}
	p.failures++
	return min(d, limit)
}

// create starts one more instance and waits until it runs.
func (p *pool) create(ctx context.Context) (runtime.Instance, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrShuttingDown
	}
	if n := len(p.members) + p.pending; n >= p.fn.MaxInstances {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: function %s has %d of %d instances", ErrPoolFull, p.fn.Name, n, p.fn.MaxInstances)
	}
	a := p.startLocked(0, false)
	p.mu.Unlock()
	select {
	case <-a.done:
		return a.inst, a.err
	case <-ctx.Done():
		return nil, ctx.Err() // the instance still joins the pool
	}
}

// find returns the live member with id, or the stopped instance with id.
func (p *pool) find(id spear.InstanceID) (*member, runtime.Instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.members {
		if m.inst.ID() == id {
			return m, m.inst
		}
	}
	for _, inst := range p.stopped {
		if inst.ID() == id {
			return nil, inst
		}
	}
	return nil, nil
}

// remove stops the live instance id and forgets a stopped one. It reports
// whether the pool had the instance.
func (p *pool) remove(ctx context.Context, id spear.InstanceID) (bool, error) {
	p.mu.Lock()
	var target *member
	for _, m := range p.members {
		if m.inst.ID() == id {
			target = m
		}
	}
	if target == nil {
		n := len(p.stopped)
		p.stopped = slices.DeleteFunc(p.stopped, func(inst runtime.Instance) bool { return inst.ID() == id })
		had := n != len(p.stopped)
		p.mu.Unlock()
		return had, nil
	}
	target.leaving = true
	p.mu.Unlock()
	return true, p.rt.Stop(ctx, target.inst)
}

// noteError records the error an invocation on m ended with, for status.
func (p *pool) noteError(m *member, err error) {
	p.mu.Lock()
	m.lastErr, m.lastErrAt = err.Error(), time.Now()
	p.mu.Unlock()
}

// poolStatus is a copy of a pool's state, read by the API, health, metrics
// and the dashboard. New pool state (balancing's ejections, crash-loop
// detection) belongs here, so that every reader sees it.
type poolStatus struct {
	Live    []memberStatus     // oldest first
	Stopped []runtime.Instance // oldest first
	// Pending counts starts in progress or waiting out a backoff;
	// Waiting the acquire calls waiting for a free instance.
	Pending, Waiting int
	// Failures counts consecutive unasked stops (the restart backoff's
	// exponent); Restarts the restarts scheduled since the agent started.
	Failures, Restarts int
	// LastFailure says why the last start failed or the last instance
	// stopped unasked, and when.
	LastFailure   string
	LastFailureAt time.Time
}

// memberStatus is a live instance's state in a poolStatus.
type memberStatus struct {
	inst      runtime.Instance
	started   time.Time
	inflight  int
	leaving   bool
	ejected   bool // taken out of balancing (set once balancing lands)
	lastErr   string
	lastErrAt time.Time
}

// status returns a copy of the pool's state.
func (p *pool) status() poolStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := poolStatus{
		Stopped: slices.Clone(p.stopped),
		Pending: p.pending, Waiting: p.waiting,
		Failures: p.failures, Restarts: p.restarts,
		LastFailure: p.lastFailure, LastFailureAt: p.lastFailureAt,
	}
	for _, m := range p.members {
		st.Live = append(st.Live, memberStatus{inst: m.inst, started: m.started, inflight: m.inflight,
			leaving: m.leaving, lastErr: m.lastErr, lastErrAt: m.lastErrAt})
	}
	return st
}

// shutdown stops taking invocations, aborts starts, and stops every live
// instance. Call wait afterwards.
func (p *pool) shutdown(ctx context.Context) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	members := slices.Clone(p.members)
	for _, m := range members {
		m.leaving = true
	}
	p.broadcastLocked()
	p.mu.Unlock()
	p.cancel()
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Go(func() {
			if err := p.rt.Stop(ctx, m.inst); err != nil {
				p.log.Warn("instance stop failed", "instance", m.inst.ID().String(), "err", err)
			}
		})
	}
	wg.Wait()
}

// wait waits for the pool's goroutines, which end once every instance has
// stopped.
func (p *pool) wait() { p.wg.Wait() }

func (p *pool) stopTimeout() time.Duration {
	return max(p.fn.StopGrace.D(), 5*time.Second) + 5*time.Second
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
