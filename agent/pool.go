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
	"github.com/spear-go/spear/agent/balancer"
	"github.com/spear-go/spear/runtime"
)

// keepStopped is how many stopped instances a pool remembers, so that the
// API can still show them (with the reason) and their last logs.
const keepStopped = 16

// crashLoopAfter is how many failed starts in a row put a function in
// crash-loop back-off.
const crashLoopAfter = 3

// pool holds the instances of one function and balances invocations over
// the ready ones.
//
// Membership is event-driven: an instance joins when its start succeeds
// (on demand, to keep min_instances, by the autoscaler, a replacement, or
// an API create); it leaves the balancer's set at once when its channel
// disconnects, it is ejected or asked to stop, and returns when it
// reconnects or its ejection ends; it leaves the pool when its runtime
// reports it stopped (a killed process, a pod deleted by someone else).
//
// Goroutines: one per instance start; one watcher per live instance,
// following its channel and waiting on its Done; one ticker for the
// autoscaler, idle timeouts, ejection checks and connection targets. All
// belong to wg. shutdown cancels ctx, which aborts starts; watchers end
// when their instance has stopped.
//
// Waiters for capacity block on changedLocked's channel, which the next
// change that may free capacity closes. It is made only when someone
// waits, so that a release with no waiter allocates nothing.
type pool struct {
	// Immutable after newPool.
	fn     FunctionConfig
	rt     runtime.Runtime
	set    runtime.Settings // what every instance of fn gets
	log    *slog.Logger
	met    *metrics
	ins    *fnInstruments // fn's series in met
	now    func() time.Time
	ctx    context.Context // ends at shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex // guards the fields below
	closed   bool
	members  []*member // live instances, oldest first
	bal      balancer.Balancer
	dirty    bool // the balancer's set must be rebuilt before the next pick
	starting int  // starts in progress; they count toward max_instances
	waiting  int  // invocations queued for a slot
	stopped  []runtime.Instance
	changed  chan struct{}
	crash    crashState   // failed starts: the function's crash-loop protection
	restarts restartState // automatic replacements of instances that stopped unasked
	scaler   autoscaler
	ejected  ejectionStats
	startDur time.Duration // how long the latest successful start took
	timer    *time.Timer   // wakes reconcile at timerAt
	timerAt  time.Time
	// lastFailure says why the last start failed or the last instance
	// stopped unasked, for status.
	lastFailure   string
	lastFailureAt time.Time
}

// member is a live instance of the pool.
type member struct {
	inst    runtime.Instance
	ep      *balancer.Endpoint
	started time.Time
	// Guarded by pool.mu.
	leaving   bool      // being stopped on purpose: never picked, never restarted
	lastUsed  time.Time // when an invocation last began or ended
	standing  standing  // with outlier ejection
	conns     connTune
	lastErr   string // the last error an invocation on it ended with
	lastErrAt time.Time
}

// attempt is one instance start; done is closed when inst and err are set.
type attempt struct {
	done chan struct{}
	inst runtime.Instance
	err  error
}

// startReason says why a start was made, for logs and the replacement
// bookkeeping.
type startReason string

const (
	startDemand  startReason = "demand" // an invocation found no free slot
	startFloor   startReason = "min_instances"
	startScale   startReason = "autoscaler"
	startRestart startReason = "restart"
	startAPI     startReason = "api"
)

func newPool(fn FunctionConfig, rt runtime.Runtime, log *slog.Logger, met *metrics) *pool {
	bal, err := balancer.New(balancer.Policy(fn.Balancer), balancer.Options{LoadFactor: fn.HashLoadFactor})
	if err != nil {
		panic(err) // validated
	}
	p := &pool{
		fn:     fn,
		rt:     rt,
		set:    fn.settings(),
		log:    log.With("function", fn.Name, "runtime", rt.Type().String()),
		met:    met,
		ins:    met.init(fn.Name, rt.Type()),
		now:    time.Now,
		bal:    bal,
		scaler: newAutoscaler(fn),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.timer = time.AfterFunc(time.Hour, p.wake)
	p.timer.Stop()
	p.mu.Lock()
	for range fn.MinInstances {
		p.startLocked(startFloor)
	}
	p.mu.Unlock()
	p.wg.Add(1)
	go p.tick()
	return p
}

// acquire returns a ready instance with a free invocation slot, chosen
// by the function's balancer for key. When none is free it queues (up to
// max_queue) and waits until ctx ends, starting an instance when the pool
// is under max_instances and the starts already under way cannot serve
// every waiter. A function in crash-loop back-off with nothing ready
// fails at once. The caller must release the member.
func (p *pool) acquire(ctx context.Context, key string) (*member, error) {
	var own *attempt // the start this caller asked for, if any
	queued := false  // counted in p.waiting
	var cold *coldStart
	defer func() {
		if queued {
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
		if m := p.pickLocked(key); m != nil {
			p.mu.Unlock()
			return m, nil
		}
		now := p.now()
		if !queued {
			if p.waiting >= p.fn.MaxQueue {
				err := &QueueFullError{Function: p.fn.Name, Queued: p.waiting, RetryAfter: p.retryAfterLocked()}
				p.mu.Unlock()
				return nil, err
			}
			queued = true
			p.waiting++
		}
		if p.starting == 0 && p.readyLocked() == 0 && p.crash.looping(now) {
			err := p.crash.err(p.fn.Name, now)
			p.mu.Unlock()
			return nil, err
		}
		if own == nil && p.needStartLocked(now) {
			own = p.startLocked(startDemand)
			cold = p.met.coldStart(ctx, p.fn.Name, p.rt.Type())
		}
		changed, live := p.changedLocked(), len(p.members)
		p.mu.Unlock()

		var ownDone <-chan struct{}
		if own != nil {
			ownDone = own.done
		}
		select {
		case <-changed:
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

// pickLocked asks the balancer for a member and takes a slot on it. A
// member whose channel turns out to be disconnected leaves the set at
// once and the balancer is asked again.
func (p *pool) pickLocked(key string) *member {
	for {
		if p.dirty {
			p.refreshLocked()
		}
		e := p.bal.Pick(key)
		if e == nil {
			return nil
		}
		m := e.Value.(*member)
		if !m.inst.Channel().IsConnected() {
			p.dirty = true
			continue
		}
		e.Begin()
		m.lastUsed = p.now()
		return m
	}
}

// refreshLocked rebuilds the balancer's set: the members that are
// running and connected, not leaving and not ejected.
func (p *pool) refreshLocked() {
	now := p.now()
	var eps []*balancer.Endpoint
	for _, m := range p.members {
		if p.eligibleLocked(m, now) {
			m.ep.Capacity = p.fn.MaxConcurrency
			if m.standing.probation > 0 {
				m.ep.Capacity = 1 // on probation: one invocation at a time
			}
			eps = append(eps, m.ep)
		}
	}
	p.bal.Update(eps)
	p.dirty = false
}

// eligibleLocked reports whether m may be balanced to.
func (p *pool) eligibleLocked(m *member, now time.Time) bool {
	if m.leaving || m.standing.ejectedAt(now) {
		return false
	}
	s := m.inst.Info().Status
	return (s == runtime.StatusRunning || s == runtime.StatusDegraded) && m.inst.Channel().IsConnected()
}

// readyLocked counts the members that may be balanced to.
func (p *pool) readyLocked() int {
	now, n := p.now(), 0
	for _, m := range p.members {
		if p.eligibleLocked(m, now) {
			n++
		}
	}
	return n
}

// needStartLocked reports whether a waiter should start an instance: the
// pool is under max_instances, the starts under way cannot serve every
// waiter, and the function is not in crash-loop back-off. A pending
// automatic restart does not count: its back-off never delays serving.
func (p *pool) needStartLocked(now time.Time) bool {
	return len(p.members)+p.starting < p.fn.MaxInstances &&
		p.starting*p.fn.MaxConcurrency < p.waiting &&
		!p.crash.looping(now)
}

// release gives back the invocation slot acquire took, and records how
// the invocation went: its latency for the balancer, whether it counts
// against the instance's standing with outlier ejection, and its error as
// the instance's last. took is 0 when the latency says nothing about the
// instance.
func (p *pool) release(m *member, took time.Duration, err error) {
	p.mu.Lock()
	now := p.now()
	m.ep.End(now, took, balancer.DefaultDecay)
	m.lastUsed = now
	if err != nil {
		m.lastErr, m.lastErrAt = err.Error(), now
	}
	p.observeLocked(m, now, err)
	p.broadcastLocked()
	p.mu.Unlock()
}

// changedLocked returns the channel that the next broadcast closes.
func (p *pool) changedLocked() <-chan struct{} {
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	return p.changed
}

// broadcastLocked wakes whoever waits on changedLocked's channel.
func (p *pool) broadcastLocked() {
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

// markDirty makes the next pick rebuild the balancer's set and wakes the
// waiters: an instance connected, disconnected or came back from
// ejection.
func (p *pool) markDirty() {
	p.mu.Lock()
	p.dirty = true
	p.broadcastLocked()
	p.mu.Unlock()
}

// floorLocked is how many instances the pool keeps without demand:
// min_instances, or what the autoscaler wants. Under the restart policy
// never, min_instances is started with the agent and not kept after.
func (p *pool) floorLocked() int {
	floor := p.scaler.desired
	if p.fn.Restart.Policy == RestartOnFailure {
		floor = max(floor, p.fn.MinInstances)
	}
	return min(floor, p.fn.MaxInstances)
}

// reconcileLocked starts instances up to the floor, and the automatic
// restarts that are due, unless the function is in crash-loop back-off
// (its retry is scheduled then).
func (p *pool) reconcileLocked() {
	if p.closed {
		return
	}
	now := p.now()
	if p.crash.looping(now) {
		p.scheduleLocked(p.crash.retryAt)
		return
	}
	if p.restarts.owed > 0 && now.Before(p.restarts.at) {
		// Automatic starts wait out the restart back-off; invocations
		// that find no free slot do not.
		p.scheduleLocked(p.restarts.at)
		return
	}
	want := max(p.floorLocked(), len(p.members)+p.starting+p.restarts.due(now))
	for n := len(p.members) + p.starting; n < min(want, p.fn.MaxInstances); n++ {
		reason := startFloor
		if p.restarts.due(now) > 0 {
			reason = startRestart
		} else if p.scaler.desired > p.fn.MinInstances {
			reason = startScale
		}
		p.startLocked(reason)
	}
	if p.restarts.owed > 0 {
		p.scheduleLocked(p.restarts.at)
	}
}

// scheduleLocked makes the pool reconcile, and rebuild its balancer's
// set, at t at the latest: a restart's back-off, a crash-loop retry or an
// ejection ends then.
func (p *pool) scheduleLocked(t time.Time) {
	now := p.now()
	if p.closed || (p.timerAt.After(now) && !t.Before(p.timerAt)) {
		return // an earlier wake-up is set
	}
	p.timerAt = t
	p.timer.Reset(max(t.Sub(now), 0))
}

// wake runs when the timer of scheduleLocked fires.
func (p *pool) wake() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timerAt = time.Time{}
	if p.closed {
		return
	}
	p.dirty = true
	p.reconcileLocked()
	// One timer serves every deadline: arm it for the next ejection to
	// end (reconcile armed it for restarts and the crash loop).
	now := p.now()
	for _, m := range p.members {
		if m.standing.ejectedAt(now) {
			p.scheduleLocked(m.standing.until)
		}
	}
	p.broadcastLocked()
}

// startLocked starts one instance in the background.
func (p *pool) startLocked(why startReason) *attempt {
	p.starting++
	if p.restarts.owed > 0 {
		p.restarts.owed-- // whatever asked for it, this start fills a place owed
	}
	a := &attempt{done: make(chan struct{})}
	p.wg.Add(1)
	go p.start(a, why)
	return a
}

func (p *pool) start(a *attempt, why startReason) {
	defer p.wg.Done()
	began := p.now()
	id, inst, err := p.startNamed()
	took := p.now().Sub(began)
	if err == nil {
		p.met.started(p.fn.Name, p.rt.Type(), took)
		p.log.Info("instance started", "instance", id.String(), "why", string(why), "took", took)
	} else {
		p.met.starts.WithLabelValues(p.fn.Name, "error").Inc()
		p.log.Warn("instance start failed", "instance", id.String(), "why", string(why), "err", err)
	}
	p.finish(a, inst, err, took)
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
func (p *pool) finish(a *attempt, inst runtime.Instance, err error, took time.Duration) {
	p.mu.Lock()
	p.starting--
	if inst != nil && p.closed {
		// Started while the pool was shutting down: stop it at once.
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), p.stopTimeout())
		_ = p.rt.Stop(ctx, inst)
		cancel()
		p.mu.Lock()
		inst, err = nil, ErrShuttingDown
	}
	now := p.now()
	switch {
	case inst != nil:
		p.crash.succeeded()
		p.startDur = took
		m := &member{inst: inst, started: now, lastUsed: now}
		m.ep = &balancer.Endpoint{Name: inst.ID().String(), Capacity: p.fn.MaxConcurrency, Value: m}
		p.members = append(p.members, m)
		p.dirty = true
		p.wg.Add(1)
		go p.watch(m)
	case !errors.Is(err, ErrShuttingDown) && p.ctx.Err() == nil:
		p.crash.failed(now, err, p.fn.Restart)
		p.lastFailure, p.lastFailureAt = "start failed: "+err.Error(), now
		if p.crash.looping(now) {
			p.log.Warn("function in crash-loop back-off", "failures", p.crash.failures, "retry_at", p.crash.retryAt, "err", err)
		}
		p.reconcileLocked()
	}
	a.inst, a.err = inst, err
	p.broadcastLocked()
	p.mu.Unlock()
	close(a.done)
}

// watch follows an instance until it stops: its channel's connects and
// disconnects change the balancer's set at once; when it stops, it leaves
// the pool and is replaced if it stopped unasked and the policy says so.
func (p *pool) watch(m *member) {
	defer p.wg.Done()
	ch := m.inst.Channel()
	for {
		select {
		case <-m.inst.Done():
			p.remove(m)
			return
		case <-ch.Disconnected():
		}
		p.markDirty()
		select {
		case <-m.inst.Done():
			p.remove(m)
			return
		case <-ch.Connected():
		}
		p.markDirty()
	}
}

// remove takes a stopped instance out of the pool.
func (p *pool) remove(m *member) {
	info := m.inst.Info()
	p.mu.Lock()
	p.members = slices.DeleteFunc(p.members, func(x *member) bool { return x == m })
	p.dirty = true
	p.stopped = append(p.stopped, m.inst)
	if len(p.stopped) > keepStopped {
		p.stopped = slices.Delete(p.stopped, 0, len(p.stopped)-keepStopped)
	}
	now := p.now()
	unasked := !m.leaving && !p.closed
	restart := unasked && p.fn.Restart.Policy == RestartOnFailure
	if unasked {
		p.lastFailure, p.lastFailureAt = "stopped unasked: "+info.Reason, now
	}
	var delay time.Duration
	if restart {
		delay = p.restarts.crashed(now, now.Sub(m.started), p.fn.Restart)
	}
	p.reconcileLocked()
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

// create starts one more instance and waits until it runs.
func (p *pool) create(ctx context.Context) (runtime.Instance, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrShuttingDown
	}
	if n := len(p.members) + p.starting; n >= p.fn.MaxInstances {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: function %s has %d of %d instances", ErrPoolFull, p.fn.Name, n, p.fn.MaxInstances)
	}
	a := p.startLocked(startAPI)
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

// delete stops the live instance id and forgets a stopped one. It reports
// whether the pool had the instance.
func (p *pool) delete(ctx context.Context, id spear.InstanceID) (bool, error) {
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
	p.leaveLocked(target)
	p.mu.Unlock()
	return true, p.rt.Stop(ctx, target.inst)
}

// leaveLocked takes m out of balancing for good: it is being stopped.
func (p *pool) leaveLocked(m *member) {
	m.leaving = true
	p.dirty = true
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
	p.timer.Stop()
	members := slices.Clone(p.members)
	for _, m := range members {
		p.leaveLocked(m)
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

// stopLocked stops m in the background, on purpose (idle, scaled down).
func (p *pool) stopLocked(m *member, why string) {
	p.leaveLocked(m)
	p.log.Info("stopping instance", "instance", m.inst.ID().String(), "why", why)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), p.stopTimeout())
		defer cancel()
		if err := p.rt.Stop(ctx, m.inst); err != nil {
			p.log.Warn("instance stop failed", "instance", m.inst.ID().String(), "err", err)
		}
	}()
}

// retryAfterLocked estimates when a refused invocation may succeed: the
// crash-loop's retry, else the time a start takes, at least a second.
func (p *pool) retryAfterLocked() time.Duration {
	now := p.now()
	if p.crash.looping(now) {
		return max(p.crash.retryAt.Sub(now), time.Second)
	}
	return max(p.startDur, time.Second)
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
