package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/buildinfo"
	"github.com/spear-go/spear/runtime"
)

// Options configure an Agent besides its Config.
type Options struct {
	// Runtimes serve the functions, one per runtime type. The agent owns
	// them: Close closes them. A function whose runtime is missing makes
	// New fail with spear.ErrUnsupportedRuntime.
	Runtimes []runtime.Runtime
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
	// NewRuntime builds the runtime of type t for a reload that adds the
	// first function of that type; the agent owns what it returns. Nil
	// refuses such a reload.
	NewRuntime func(t spear.RuntimeType) (runtime.Runtime, error)
	// Load reads the configuration again, for ReloadConfig (SIGHUP, the
	// API's reload); nil: the agent cannot reload by itself.
	Load func() (Config, error)
	// TracerProvider, when set, turns tracing on: every invocation gets
	// spans, and its trace context travels to the instance
	// (docs/observability.md). Nil (the default) is off, at no cost.
	TracerProvider trace.TracerProvider
	// Version is the agent's version for spearlet_build_info; empty means
	// the module version from the build info.
	Version string
}

// Agent runs a node's functions: one pool of instances per function, and
// invocations balanced over them. Reload changes the functions while it
// serves. It is safe for concurrent use.
type Agent struct {
	// Immutable after New.
	log        *slog.Logger
	reg        *prometheus.Registry
	met        *metrics
	newRuntime func(spear.RuntimeType) (runtime.Runtime, error)
	load       func() (Config, error)
	stop       context.Context // ends when Close begins
	stopNow    context.CancelFunc

	reloadMu sync.Mutex // held by a reload, start to end

	mu       sync.Mutex // guards the fields below
	cfg      Config     // with defaults
	fns      map[string]*function
	order    []string // function names, in config order
	retiring []*pool  // pools a reload replaced or removed, until they have stopped
	runtimes []runtime.Runtime
	draining bool
	active   int           // admitted invocations not yet finished
	idle     chan struct{} // closed when draining and active reaches 0
	closed   bool
}

// function is a configured function: its pool, and the invocations
// admitted to it.
type function struct {
	pool *pool
	// Guarded by Agent.mu.
	active  int           // admitted invocations not yet finished
	retired bool          // replaced or removed by a reload: admits nothing more
	drained chan struct{} // closed when retired and active reaches 0
}

// New validates cfg and returns an agent serving its functions. Each
// pool starts its min_instances in the background.
func New(cfg Config, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	a := &Agent{
		cfg:        cfg,
		log:        opts.Logger,
		fns:        map[string]*function{},
		runtimes:   slices.Clone(opts.Runtimes),
		reg:        prometheus.NewRegistry(),
		idle:       make(chan struct{}),
		newRuntime: opts.NewRuntime,
		load:       opts.Load,
	}
	a.stop, a.stopNow = context.WithCancel(context.Background())
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	rts := make([]runtime.Runtime, len(cfg.Functions))
	for i, fn := range cfg.Functions {
		rt := a.runtimeLocked(fn)
		if rt == nil {
			a.stopNow()
			return nil, fmt.Errorf("%w: function %s needs the %s runtime, which this agent does not run", spear.ErrUnsupportedRuntime, fn.Name, fn.Runtime)
		}
		rts[i] = rt
	}
	a.met = newMetrics(a.reg, a, buildinfo.Read(opts.Version), cfg.Metrics.perInstance())
	if opts.TracerProvider != nil {
		a.met.tracer = opts.TracerProvider.Tracer(tracerName)
	}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for i, fn := range cfg.Functions {
		a.fns[fn.Name] = &function{pool: newPool(fn, rts[i], a.log, a.met)}
		a.order = append(a.order, fn.Name)
	}
	return a, nil
}

// runtimeLocked returns the runtime that runs fn (its runtime validated),
// or nil when the agent has none.
func (a *Agent) runtimeLocked(fn FunctionConfig) runtime.Runtime {
	t, _ := spear.ParseRuntimeType(fn.Runtime)
	for _, rt := range a.runtimes {
		if rt.Type() == t {
			return rt
		}
	}
	return nil
}

// Config returns the agent's configuration, defaults filled in.
func (a *Agent) Config() Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// pools returns the current functions' pools in config order and, with
// retiring, the pools a reload is retiring after them.
func (a *Agent) pools(retiring bool) []*pool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*pool, 0, len(a.order)+len(a.retiring))
	for _, name := range a.order {
		out = append(out, a.fns[name].pool)
	}
	if retiring {
		out = append(out, a.retiring...)
	}
	return out
}

// function returns the current function called name, or nil.
func (a *Agent) function(name string) *function {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fns[name]
}

// Registry returns the registry of the agent's metrics.
func (a *Agent) Registry() *prometheus.Registry { return a.reg }

// Invocation is one call of a function.
type Invocation struct {
	Function string
	Method   string // empty means the function's default
	Payload  []byte
	Metadata map[string]string
	// Key is the affinity key of the hash balancer: invocations with the
	// same key go to the same instance while the pool and its load allow
	// (the HTTP header Spear-Key, the gRPC field key). Other balancers
	// ignore it.
	Key string
	// Timeout bounds the invocation, waiting for an instance included
	// (0: the config's invoke_timeout).
	Timeout time.Duration
}

// Result is a function's answer.
type Result struct {
	Instance spear.InstanceID // who answered
	// Payload is the function's output. It may alias a pooled receive
	// buffer: call Release once done with it; a Result never released
	// only costs its buffer's reuse.
	Payload []byte

	res channel.Result
}

// Release gives the result's buffer back (see channel.Result). Payload
// must not be used after it.
func (r *Result) Release() {
	r.res.Release()
	r.Payload = nil
}

// Invoke runs inv on an instance of its function: a ready instance with
// a free slot under max_concurrency, chosen by the function's balancer,
// else a new one if the pool is under max_instances, else the first to
// free up before the deadline. An invocation that never reached its
// instance is tried again on another (see retryable). Errors match
// ErrUnknownFunction, ErrPayloadTooLarge, ErrBadRequest, ErrShuttingDown,
// ErrQueueFull, ErrNoInstance, spear.ErrTimeout,
// spear.ErrConnectionFailed (the instance died: a *spear.InstanceError
// naming it), or are a *spear.RemoteError (the function failed).
func (a *Agent) Invoke(ctx context.Context, inv Invocation) (res Result, err error) {
	started := time.Now()
	ctx, span := a.startInvokeSpan(ctx, &inv, false)
	defer func() { endSpan(span, err) }()
	fn, timeout, err := a.admit(inv)
	if err != nil {
		a.observe(fn, started, err)
		return Result{}, err
	}
	defer a.leave(fn)
	p := fn.pool
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		m, err := a.acquire(ctx, p, inv.Key)
		if err != nil {
			a.observe(fn, started, err)
			return Result{}, err
		}
		began := time.Now()
		xctx, xspan, md := a.startExecuteSpan(ctx, m.inst, inv, attempt)
		out, err := channel.Call(xctx, m.inst.Channel(), channel.Invocation{Method: inv.Method, Payload: inv.Payload, Metadata: md})
		endSpan(xspan, err)
		p.release(m, measured(err, time.Since(began)), err)
		if retryable(ctx, err, attempt) {
			continue
		}
		a.observe(fn, started, err)
		if err != nil {
			return Result{}, err
		}
		setInstance(span, m.inst.ID())
		return Result{Instance: m.inst.ID(), Payload: out.Payload, res: out}, nil
	}
}

// acquire waits for a free instance of p's function, chosen for key,
// under its span, and records the wait.
func (a *Agent) acquire(ctx context.Context, p *pool, key string) (*member, error) {
	begun := time.Now()
	actx, span := a.startAcquireSpan(ctx, p.fn.Name)
	m, err := p.acquire(actx, key)
	endSpan(span, err)
	p.ins.wait.Observe(time.Since(begun).Seconds())
	return m, err
}

// Stream is a streamed invocation's output. It is for one goroutine; the
// caller must Close it.
type Stream struct {
	// Instance is the instance producing the output.
	Instance spear.InstanceID

	a       *Agent
	fn      *function
	m       *member
	st      *channel.Stream
	cancel  context.CancelFunc
	started time.Time
	ended   bool
	err     error         // what ended the stream, for the instance's standing
	spans   [2]trace.Span // the invocation's and the execute request's; nil when tracing is off
}

// InvokeStream starts inv with streamed output. It picks an instance as
// Invoke does; errors until then are Invoke's. The function's own failure
// arrives from Stream.Recv.
func (a *Agent) InvokeStream(ctx context.Context, inv Invocation) (*Stream, error) {
	started := time.Now()
	ctx, span := a.startInvokeSpan(ctx, &inv, true)
	fn, timeout, err := a.admit(inv)
	if err != nil {
		a.observe(fn, started, err)
		endSpan(span, err)
		return nil, err
	}
	p := fn.pool
	ctx, cancel := context.WithTimeout(ctx, timeout)
	for attempt := 1; ; attempt++ {
		m, err := a.acquire(ctx, p, inv.Key)
		if err != nil {
			cancel()
			a.leave(fn)
			a.observe(fn, started, err)
			endSpan(span, err)
			return nil, err
		}
		xctx, xspan, md := a.startExecuteSpan(ctx, m.inst, inv, attempt)
		st, err := channel.ExecuteStream(xctx, m.inst.Channel(), channel.Invocation{Method: inv.Method, Payload: inv.Payload, Metadata: md})
		if err == nil {
			setInstance(span, m.inst.ID())
			return &Stream{Instance: m.inst.ID(), a: a, fn: fn, m: m, st: st, cancel: cancel, started: started,
				spans: [2]trace.Span{xspan, span}}, nil
		}
		endSpan(xspan, err)
		p.release(m, 0, err)
		if retryable(ctx, err, attempt) {
			continue
		}
		cancel()
		a.leave(fn)
		a.observe(fn, started, err)
		endSpan(span, err)
		return nil, err
	}
}

// Recv returns the next chunk of output, io.EOF after the last, or the
// error that ended the invocation.
func (s *Stream) Recv() ([]byte, error) {
	if s.ended {
		return nil, io.EOF
	}
	b, err := s.st.Recv()
	if err != nil {
		s.ended = true
		if errors.Is(err, io.EOF) {
			s.finish(nil)
		} else {
			s.err = err
			s.finish(err)
		}
	}
	return b, err
}

// finish records how the invocation ended.
func (s *Stream) finish(err error) {
	s.a.observe(s.fn, s.started, err)
	for _, span := range s.spans {
		endSpan(span, err)
	}
}

// Close ends the invocation, abandoning it if it has not finished, and
// frees its slot. It is idempotent.
func (s *Stream) Close() {
	if s.cancel == nil {
		return
	}
	if !s.ended {
		s.ended = true
		s.finish(context.Canceled)
	}
	s.st.Close()
	s.cancel()
	s.cancel = nil
	s.fn.pool.release(s.m, 0, s.err)
	s.a.leave(s.fn)
}

// admit checks an invocation and counts it as in flight, and returns its
// function and timeout; the caller must call leave when it has finished.
// The function is returned, when it exists, even with an error.
func (a *Agent) admit(inv Invocation) (*function, time.Duration, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fn, ok := a.fns[inv.Function]
	switch {
	case !ok:
		return nil, 0, fmt.Errorf("%w: %q", ErrUnknownFunction, inv.Function)
	case len(inv.Payload) > a.cfg.MaxPayload:
		return fn, 0, fmt.Errorf("%w: %d bytes, the limit is %d", ErrPayloadTooLarge, len(inv.Payload), a.cfg.MaxPayload)
	case inv.Timeout < 0:
		return fn, 0, fmt.Errorf("%w: negative timeout %s", ErrBadRequest, inv.Timeout)
	case a.draining:
		return fn, 0, ErrShuttingDown
	}
	a.active++
	fn.active++
	timeout := inv.Timeout
	if timeout == 0 {
		timeout = a.cfg.InvokeTimeout.D()
	}
	return fn, timeout, nil
}

// leave ends an invocation that admit counted.
func (a *Agent) leave(fn *function) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.active--
	fn.active--
	if a.draining && a.active == 0 {
		close(a.idle)
	}
	if fn.retired && fn.active == 0 {
		close(fn.drained)
	}
}

// observe records an invocation's outcome; invocations of unknown
// functions (fn nil) are not recorded, keeping the label set fixed.
func (a *Agent) observe(fn *function, started time.Time, err error) {
	if fn == nil {
		return
	}
	took := time.Since(started)
	outcome := "ok"
	if err != nil {
		c := classify(err)
		outcome = c.outcome()
		if c.http >= 500 {
			a.log.Debug("invocation failed", "function", fn.pool.fn.Name, "err", err)
		}
	}
	ins := fn.pool.ins
	ins.invocations[outcome].Inc()
	ins.duration.Observe(took.Seconds())
	ins.latency.Latency(took)
}

// Functions describes the configured functions, in config order, with
// their health.
func (a *Agent) Functions() []api.Function {
	pools := a.pools(false)
	out := make([]api.Function, 0, len(pools))
	for _, p := range pools {
		out = append(out, describeFunction(p.fn, p.status()))
	}
	return out
}

// PoolStatus returns the state of function's pool, or false for an
// unknown function.
func (a *Agent) PoolStatus(function string) (PoolStatus, bool) {
	fn := a.function(function)
	if fn == nil {
		return PoolStatus{}, false
	}
	return fn.pool.status(), true
}

// describeFunction is fn's row of the functions list: its settings, its
// pool's state and its health.
func describeFunction(fn FunctionConfig, st PoolStatus) api.Function {
	h := functionHealth(fn, st)
	f := api.Function{
		Name:           fn.Name,
		Runtime:        fn.Runtime,
		MinInstances:   fn.MinInstances,
		MaxInstances:   fn.MaxInstances,
		MaxConcurrency: fn.MaxConcurrency,
		Balancer:       fn.Balancer,
		Readiness:      fn.Readiness,
		Instances:      st.Live,
		Ready:          st.Ready,
		InFlight:       st.InFlight,
		Queued:         st.Queued,
		Desired:        st.Desired,
		Panicking:      st.Panicking,
		Health:         h.State,
		HealthReason:   h.Reason,
		ReadinessMet:   h.ReadinessMet,
		Restarts:       st.Restarts,
		LastError:      st.LastFailure,
		LastErrorAt:    st.LastFailureAt,
		NextRetry:      st.RestartAt,
	}
	if c := st.CrashLoop; c != nil {
		f.FailedStarts, f.NextRetry = c.Failures, c.RetryAt
	}
	return f
}

// Instances describes the live and recently stopped instances of function,
// or of every function when it is empty; stopped ones come after the live
// ones of their function. The instances of a function that a reload
// replaced or removed are listed until they have stopped.
func (a *Agent) Instances(function string) ([]api.Instance, error) {
	if function != "" && a.function(function) == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownFunction, function)
	}
	out := []api.Instance{}
	for _, p := range a.pools(true) {
		if function != "" && p.fn.Name != function {
			continue
		}
		st := p.status()
		for _, m := range st.Members {
			in := describe(m.Instance, m.InFlight)
			in.Health, in.HealthReason, in.EjectedUntil = m.Health, m.Reason, m.EjectedUntil
			in.LastError, in.LastErrorAt = m.LastError, m.LastErrorAt
			out = append(out, in)
		}
		for _, inst := range st.Stopped {
			out = append(out, describe(inst, 0))
		}
	}
	return out, nil
}

func describe(inst runtime.Instance, inflight int) api.Instance {
	info := inst.Info()
	ch := inst.Channel()
	s := ch.Stats()
	in := api.Instance{
		ID:              info.ID.String(),
		Function:        info.Function,
		Runtime:         info.ID.Runtime.String(),
		Status:          string(info.Status),
		Reason:          info.Reason,
		Created:         info.Created,
		LastHealthCheck: info.LastHealthCheck,
		PID:             info.PID,
		Pod:             info.Pod,
		InFlight:        inflight,
		Restarts:        int(reconnects(s)),
		Channel:         string(ch.Type()),
		Connected:       ch.IsConnected(),
		Connections:     ch.Connections(),
		Stats:           s,
	}
	return in
}

// CreateInstance starts one more instance of function and waits until it
// runs. It fails with ErrPoolFull at max_instances.
func (a *Agent) CreateInstance(ctx context.Context, function string) (api.Instance, error) {
	fn := a.function(function)
	if fn == nil {
		return api.Instance{}, fmt.Errorf("%w: %q", ErrUnknownFunction, function)
	}
	if a.isDraining() {
		return api.Instance{}, ErrShuttingDown
	}
	inst, err := fn.pool.create(ctx)
	if err != nil {
		return api.Instance{}, err
	}
	return describe(inst, 0), nil
}

// DeleteInstance stops the instance id ("runtime:name") and waits until it
// is gone; a stopped instance is forgotten. The pool replaces it only to
// keep min_instances.
func (a *Agent) DeleteInstance(ctx context.Context, id string) error {
	iid, err := spear.ParseInstanceID(id)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	for _, p := range a.pools(true) {
		if ok, err := p.delete(ctx, iid); ok {
			return err
		}
	}
	return fmt.Errorf("%w: %s", ErrUnknownInstance, id)
}

// Logs returns up to n of the instance's latest output lines.
func (a *Agent) Logs(id string, n int) ([]string, error) {
	inst, err := a.findInstance(id)
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("%w: negative line count", ErrBadRequest)
	}
	lines := inst.Logs(n)
	if lines == nil {
		lines = []string{}
	}
	return lines, nil
}

// FollowLogs calls fn with up to tail of the instance's latest output
// lines, then with each new line as it comes, until the instance has
// stopped and its output is drained (nil), ctx ends (its error) or fn
// fails (its error). Errors match ErrBadRequest for a malformed id or an
// instance whose runtime cannot follow output, and ErrUnknownInstance.
func (a *Agent) FollowLogs(ctx context.Context, id string, tail int, fn func(line string) error) error {
	f, err := a.follower(id)
	if err != nil {
		return err
	}
	if tail < 0 {
		return fmt.Errorf("%w: negative line count", ErrBadRequest)
	}
	return f.FollowLogs(ctx, tail, fn)
}

// follower returns the instance id if its output can be followed.
func (a *Agent) follower(id string) (runtime.Follower, error) {
	inst, err := a.findInstance(id)
	if err != nil {
		return nil, err
	}
	f, ok := inst.(runtime.Follower)
	if !ok {
		return nil, fmt.Errorf("%w: the %s runtime cannot follow an instance's output", ErrBadRequest, inst.ID().Runtime)
	}
	return f, nil
}

// findInstance returns the live or recently stopped instance id.
func (a *Agent) findInstance(id string) (runtime.Instance, error) {
	iid, err := spear.ParseInstanceID(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	for _, p := range a.pools(true) {
		if _, inst := p.find(iid); inst != nil {
			return inst, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrUnknownInstance, id)
}

func (a *Agent) isDraining() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.draining
}

// Draining reports whether the agent has stopped taking invocations.
func (a *Agent) Draining() bool { return a.isDraining() }

// Drain stops taking invocations (they fail with ErrShuttingDown) and
// waits until those in flight have finished, or ctx ends.
func (a *Agent) Drain(ctx context.Context) error {
	a.mu.Lock()
	if !a.draining {
		a.draining = true
		if a.active == 0 {
			close(a.idle)
		}
	}
	active := a.active
	a.mu.Unlock()
	if active > 0 {
		a.log.Info("draining: waiting for in-flight invocations", "in_flight", active)
	}
	select {
	case <-a.idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain: in-flight invocations did not finish: %w", ctx.Err())
	}
}

// Close drains without waiting, stops every instance, and closes the
// runtimes. ctx bounds the graceful part; runtimes then force what is
// left. It is idempotent.
func (a *Agent) Close(ctx context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	if !a.draining {
		a.draining = true
		if a.active == 0 {
			close(a.idle)
		}
	}
	a.mu.Unlock()
	a.stopNow() // a reload under way gives up what it has not committed
	pools := a.pools(true)
	var wg sync.WaitGroup
	for _, p := range pools {
		wg.Go(func() { p.shutdown(ctx) })
	}
	wg.Wait()
	a.reloadMu.Lock() // let a reload finish with its pools before the runtimes close
	defer a.reloadMu.Unlock()
	a.mu.Lock()
	runtimes := a.runtimes
	a.mu.Unlock()
	var errs []error
	for _, rt := range runtimes {
		if err := rt.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close %s runtime: %w", rt.Type(), err))
		}
	}
	for _, p := range pools {
		p.wait()
	}
	return errors.Join(errs...)
}
