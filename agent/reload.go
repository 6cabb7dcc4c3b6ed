package agent

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/runtime"
)

// ReloadConfig reads the configuration again with Options.Load and
// applies it with Reload. SIGHUP and the API's reload call it.
func (a *Agent) ReloadConfig(ctx context.Context) (api.Reload, error) {
	if a.load == nil {
		return api.Reload{}, fmt.Errorf("%w: this agent was given no configuration source to read again", spear.ErrConfig)
	}
	cfg, err := a.load()
	if err != nil {
		a.log.Error("reload refused: the configuration is not valid; the old one keeps serving", "err", err)
		return api.Reload{}, err
	}
	return a.Reload(ctx, cfg)
}

// Reload makes cfg the agent's configuration without a restart:
//
//   - an added function starts its pool;
//   - a changed function rolls: a new pool starts with the new settings,
//     and once its instances run (min_instances, or one when the old pool
//     had any), it takes the new invocations while the old pool drains
//     and stops;
//   - a removed function takes no new invocations, drains, and stops;
//   - an unchanged function is left alone, instances and all;
//   - invoke_timeout and shutdown_grace apply to what comes next.
//
// It is all or nothing. An invalid cfg, one that changes a setting that
// needs a restart (the API and channel listeners, kubernetes, wasm,
// max_payload), or a new pool whose instances fail to start (or do not
// start before ctx ends) leaves the old configuration serving, untouched,
// and the error says why. Draining waits up to shutdown_grace; Reload
// returns once the old pools have stopped. Reloads run one at a time.
func (a *Agent) Reload(ctx context.Context, cfg Config) (api.Reload, error) {
	if err := cfg.Validate(); err != nil {
		return api.Reload{}, err
	}
	cfg = cfg.withDefaults()
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(a.stop, cancel)()

	a.mu.Lock()
	old, closing := a.cfg, a.draining
	a.mu.Unlock()
	if closing {
		return api.Reload{}, ErrShuttingDown
	}
	if err := restartOnly(old, cfg); err != nil {
		return api.Reload{}, err
	}
	res, roll := diff(old, cfg)

	// Start the new pools; nothing serves from them yet.
	started := map[string]*pool{}
	var added []runtime.Runtime
	abort := func(err error) (api.Reload, error) {
		stopPools(slices.Collect(maps.Values(started)))
		for _, rt := range added {
			_ = rt.Close(context.Background())
		}
		a.log.Error("reload failed; the old configuration keeps serving", "err", err)
		return api.Reload{}, err
	}
	for _, fn := range cfg.Functions {
		if !slices.Contains(roll, fn.Name) {
			continue
		}
		rt, err := a.reloadRuntime(fn, &added)
		if err != nil {
			return abort(err)
		}
		started[fn.Name] = newPool(fn, rt, a.log, a.met)
	}
	var g errgroup.Group
	for name, p := range started {
		had := a.liveInstances(name)
		g.Go(func() error {
			if err := p.warm(ctx, p.fn.MinInstances, had > 0); err != nil {
				return fmt.Errorf("%w: function %s: its new instances did not start: %w", ErrNoInstance, name, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return abort(err)
	}

	// Switch: from here on, invocations go to the new pools.
	a.mu.Lock()
	if a.draining {
		a.mu.Unlock()
		return abort(ErrShuttingDown)
	}
	a.runtimes = append(a.runtimes, added...)
	fns := make(map[string]*function, len(cfg.Functions))
	order := make([]string, 0, len(cfg.Functions))
	for _, fn := range cfg.Functions {
		if p, ok := started[fn.Name]; ok {
			fns[fn.Name] = &function{pool: p}
		} else {
			fns[fn.Name] = a.fns[fn.Name]
		}
		order = append(order, fn.Name)
	}
	var retired []*function
	for _, name := range a.order {
		if f := a.fns[name]; fns[name] != f {
			f.retired, f.drained = true, make(chan struct{})
			if f.active == 0 {
				close(f.drained)
			}
			retired = append(retired, f)
			a.retiring = append(a.retiring, f.pool)
		}
	}
	a.fns, a.order, a.cfg = fns, order, cfg
	a.mu.Unlock()
	a.log.Info("configuration reloaded", "added", res.Added, "changed", res.Changed, "removed", res.Removed, "unchanged", len(res.Unchanged))

	a.retire(retired, cfg.ShutdownGrace.D())
	return res, nil
}

// retire waits, up to grace, for the invocations admitted to each
// function to finish, then stops its pool and forgets it.
func (a *Agent) retire(fns []*function, grace time.Duration) {
	var wg sync.WaitGroup
	for _, f := range fns {
		wg.Go(func() {
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-f.drained:
			case <-a.stop.Done():
			case <-t.C:
				a.log.Warn("reload: shutdown_grace is over; stopping the old instances with invocations in flight", "function", f.pool.fn.Name)
			}
			stopPools([]*pool{f.pool})
			a.mu.Lock()
			a.retiring = slices.DeleteFunc(a.retiring, func(p *pool) bool { return p == f.pool })
			a.mu.Unlock()
		})
	}
	wg.Wait()
}

// stopPools stops every instance of the pools and waits for them.
func stopPools(pools []*pool) {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range pools {
		wg.Go(func() {
			p.shutdown(ctx)
			p.wait()
		})
	}
	wg.Wait()
}

// reloadRuntime returns the runtime for fn: the agent's, or one built
// with Options.NewRuntime, which it appends to added.
func (a *Agent) reloadRuntime(fn FunctionConfig, added *[]runtime.Runtime) (runtime.Runtime, error) {
	a.mu.Lock()
	rt := a.runtimeLocked(fn)
	a.mu.Unlock()
	if rt != nil {
		return rt, nil
	}
	t, _ := spear.ParseRuntimeType(fn.Runtime) // validated
	for _, rt := range *added {
		if rt.Type() == t {
			return rt, nil
		}
	}
	if a.newRuntime == nil {
		return nil, fmt.Errorf("%w: function %s needs the %s runtime, which this agent does not run; restart it to add one", spear.ErrUnsupportedRuntime, fn.Name, t)
	}
	rt, err := a.newRuntime(t)
	if err != nil {
		return nil, fmt.Errorf("function %s: %s runtime: %w", fn.Name, t, err)
	}
	*added = append(*added, rt)
	return rt, nil
}

// liveInstances counts the live instances of the current function name.
func (a *Agent) liveInstances(name string) int {
	st, ok := a.PoolStatus(name)
	if !ok {
		return 0
	}
	return st.Live
}

// warmPoll is how often warm looks again besides the pool's broadcasts:
// an instance's channel connecting is not one.
const warmPoll = 20 * time.Millisecond

// warm waits until n of the pool's instances are ready, or, with n zero
// and one, starts one and waits for it. It fails at the first failed
// start, with its error, or when ctx ends.
func (p *pool) warm(ctx context.Context, n int, one bool) error {
	if n == 0 {
		if !one {
			return nil
		}
		_, err := p.create(ctx)
		return err
	}
	for {
		p.mu.Lock()
		ready, failed, changed := p.readyLocked(), p.crash.lastErr, p.changedLocked()
		p.mu.Unlock()
		switch {
		case ready >= n:
			return nil
		case failed != nil:
			return failed
		}
		t := time.NewTimer(warmPoll)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%d of %d ready when the reload gave up: %w", ready, n, ctx.Err())
		}
		t.Stop()
	}
}

// diff compares the functions of two configurations: what a reload from
// old to cfg does to each, and the functions that need a new pool (added
// and changed ones).
func diff(old, cfg Config) (res api.Reload, roll []string) {
	res = api.Reload{Added: []string{}, Changed: []string{}, Removed: []string{}, Unchanged: []string{}}
	before := map[string]FunctionConfig{}
	for _, fn := range old.Functions {
		before[fn.Name] = fn
	}
	after := map[string]bool{}
	for _, fn := range cfg.Functions {
		after[fn.Name] = true
		prev, ok := before[fn.Name]
		switch {
		case !ok:
			res.Added = append(res.Added, fn.Name)
			roll = append(roll, fn.Name)
		case !reflect.DeepEqual(prev, fn):
			res.Changed = append(res.Changed, fn.Name)
			roll = append(roll, fn.Name)
		default:
			res.Unchanged = append(res.Unchanged, fn.Name)
		}
	}
	for _, fn := range old.Functions {
		if !after[fn.Name] {
			res.Removed = append(res.Removed, fn.Name)
		}
	}
	return res, roll
}

// restartOnly refuses a configuration that changes a setting that only a
// restart applies: all but the functions, invoke_timeout and
// shutdown_grace. It names each one. New settings are restart-only
// unless listed here.
func restartOnly(old, cfg Config) error {
	reloadable := func(c Config) Config {
		c.Functions, c.InvokeTimeout, c.ShutdownGrace = nil, 0, 0
		return c
	}
	ov, nv := reflect.ValueOf(reloadable(old)), reflect.ValueOf(reloadable(cfg))
	var p problems
	for _, f := range reflect.VisibleFields(ov.Type()) {
		a, b := ov.FieldByIndex(f.Index), nv.FieldByIndex(f.Index)
		if reflect.DeepEqual(a.Interface(), b.Interface()) {
			continue
		}
		name := jsonName(f)
		if f.Type.Kind() == reflect.Struct {
			for _, sf := range reflect.VisibleFields(f.Type) {
				if !reflect.DeepEqual(a.FieldByIndex(sf.Index).Interface(), b.FieldByIndex(sf.Index).Interface()) {
					p.add(name+"."+jsonName(sf), "changed; a restart applies it, not a reload (nothing was reloaded)")
				}
			}
			continue
		}
		p.add(name, "changed; a restart applies it, not a reload (nothing was reloaded)")
	}
	return p.err()
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "" {
		return f.Name
	}
	return name
}
