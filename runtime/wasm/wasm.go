// Package wasm is the WebAssembly runtime: it runs WASI preview 1 command
// modules inside the agent with wazero (pure Go, no cgo), one module
// instance per spear.InstanceID, each talking to its channel over the
// memory transport. docs/wasm.md specifies the guest interface; sdk/guest
// implements it for Go. What an instance runs is a [Spec]; importing the
// package registers its runtime.Kind, so that a function of runtime
// "wasm" decodes into one.
//
// Goroutines. Per instance one supervisor goroutine owns the instance's
// lifecycle: it starts a module instance (an "incarnation"), watches it,
// and on a failure (a deadline passed, a cancelled request, a trap, memory
// exhausted) kills it, answers the requests it held, and starts a fresh one
// from the cached compiled module. Per incarnation three more goroutines
// run and are joined before the next starts:
//
//	module      runs the guest's _start; its stdin is the inbox, its
//	            stdout a pipe, its stderr the instance's log
//	agent pump  reads the incarnation's memory connection to the channel
//	            and queues frames in the inbox (CANCEL frames are acted on
//	            at once)
//	guest pump  reads frames from the guest's stdout and writes them to
//	            the memory connection
//
// The inbox hands the guest one request at a time and knows which request
// is in flight, and since when; that is what lets the supervisor enforce
// deadlines on a guest that cannot be preempted.
package wasm

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
)

// DefaultMemoryLimit caps an instance's linear memory when neither the
// Spec nor the Options say otherwise: 64 MiB.
const DefaultMemoryLimit = 64 << 20

// DefaultLogLines is how many lines of a guest's stderr are kept for Logs.
const DefaultLogLines = 1000

// Defaults for zero runtime.Settings fields.
const (
	DefaultStartTimeout = 10 * time.Second
	DefaultStopGrace    = 5 * time.Second
)

// Options configure a Runtime. Zero values mean the defaults.
type Options struct {
	// Factory creates the instances' channels. Required.
	Factory *channel.Factory
	// Logger receives the runtime's logs and the guests' stderr, with the
	// instance's id attached; nil discards them.
	Logger *slog.Logger
	// DefaultMemoryLimit caps an instance's linear memory in bytes when its
	// Spec sets no Memory (default DefaultMemoryLimit).
	DefaultMemoryLimit uint64
	// Modules are modules built into the program, by name; a Spec names
	// one as "@name". cmd/spearlet has "wasmecho", the example module.
	Modules map[string][]byte
	// LogLines is how many stderr lines per instance Logs can return
	// (default DefaultLogLines).
	LogLines int
	// CacheDir, when set, keeps compiled code in that directory across
	// restarts (wazero's file cache), so a module is compiled once per
	// machine rather than once per process. Compiling a Go module takes
	// seconds. Default: memory only.
	CacheDir string
}

// Runtime runs wasm instances. It implements runtime.Runtime for
// spear.Wasm and is safe for concurrent use.
type Runtime struct {
	// Immutable after construction.
	opts     Options
	log      *slog.Logger
	engine   wazero.Runtime
	cache    wazero.CompilationCache
	wg       sync.WaitGroup // supervisors
	compiles sync.WaitGroup // compilations in progress

	mu        sync.Mutex // guards the fields below; taken before the factory's
	closed    bool
	modules   map[[sha256.Size]byte]*module
	instances map[spear.InstanceID]*Instance
}

var _ runtime.Runtime = (*Runtime)(nil)

// module is a compiled module, shared by every instance of the same bytes.
type module struct {
	ready     chan struct{} // closed when compiled and err are set
	compiled  wazero.CompiledModule
	minMemory uint64 // bytes the module's memory starts with
	err       error
}

// New returns a runtime with one wazero engine (compiler where supported,
// with an in-memory compilation cache) and WASI preview 1.
func New(opts Options) (*Runtime, error) {
	if opts.Factory == nil {
		return nil, fmt.Errorf("%w: wasm.Options.Factory is required", spear.ErrInvalidConfig)
	}
	if opts.DefaultMemoryLimit == 0 {
		opts.DefaultMemoryLimit = DefaultMemoryLimit
	}
	if opts.LogLines <= 0 {
		opts.LogLines = DefaultLogLines
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx := context.Background()
	cache := wazero.NewCompilationCache()
	if opts.CacheDir != "" {
		var err error
		if cache, err = wazero.NewCompilationCacheWithDir(opts.CacheDir); err != nil {
			return nil, fmt.Errorf("%w: wasm compilation cache: %w", spear.ErrConfig, err)
		}
	}
	// Memory limits are per instance (see memory.go), so one engine serves
	// every limit. CloseOnContextDone lets the supervisor stop a guest
	// that is spinning in a loop.
	engine := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(true))
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, engine); err != nil {
		engine.Close(ctx)
		cache.Close(ctx)
		return nil, fmt.Errorf("%w: instantiate WASI: %w", spear.ErrConfig, err)
	}
	if err := instantiateHost(ctx, engine); err != nil {
		engine.Close(ctx)
		cache.Close(ctx)
		return nil, fmt.Errorf("%w: instantiate %s: %w", spear.ErrConfig, hostModule, err)
	}
	return &Runtime{
		opts:      opts,
		log:       log.With("runtime", spear.Wasm.String()),
		engine:    engine,
		cache:     cache,
		modules:   map[[sha256.Size]byte]*module{},
		instances: map[spear.InstanceID]*Instance{},
	}, nil
}

// Type returns spear.Wasm.
func (r *Runtime) Type() spear.RuntimeType { return spear.Wasm }

// Start instantiates the module of spec, a Spec, as instance id,
// compiling it first unless a module with the same bytes was compiled
// before, and waits until the guest has authenticated on its memory
// channel. The spec's Env and Args reach the guest's WASI environment and
// arguments; the guest sees no files. Errors are *spear.InstanceError
// values: runtime.ErrExists, runtime.ErrClosed, spear.ErrInvalidConfig for
// an invalid spec or a module that is not a WASI command,
// spear.ErrTimeout when the guest did not connect within
// set.StartTimeout, spear.ErrConnectionFailed when it exited first.
func (r *Runtime) Start(ctx context.Context, id spear.InstanceID, set runtime.Settings, spec runtime.Spec) (runtime.Instance, error) {
	inst, err := r.start(ctx, id, set, spec)
	if err != nil {
		return nil, spear.InstanceErr(id, "start", err)
	}
	return inst, nil
}

func (r *Runtime) start(ctx context.Context, id spear.InstanceID, set runtime.Settings, rspec runtime.Spec) (*Instance, error) {
	spec, set, err := runtime.Accept[Spec](id, set, rspec, DefaultStartTimeout, DefaultStopGrace)
	if err != nil {
		return nil, err
	}
	cfg := channel.Config{}
	if set.Channel != nil {
		cfg = *set.Channel
	}
	switch cfg.Type {
	case "":
		cfg.Type = channel.Memory
	case channel.Memory:
	default:
		return nil, fmt.Errorf("%w: wasm instances use memory channels, not %s", spear.ErrUnsupportedChannelType, cfg.Type)
	}
	code, err := r.moduleBytes(spec)
	if err != nil {
		return nil, err
	}
	mod, err := r.compile(ctx, code)
	if err != nil {
		return nil, err
	}
	limit := uint64(spec.Memory)
	if limit == 0 {
		limit = r.opts.DefaultMemoryLimit
	}
	if mod.minMemory > limit {
		return nil, fmt.Errorf("%w: the module needs %d bytes of memory to start; the limit is %d", spear.ErrInvalidConfig, mod.minMemory, limit)
	}
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return nil, runtime.ErrClosed
	case r.instances[id] != nil:
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: running", runtime.ErrExists)
	}
	ch, err := r.opts.Factory.Create(ctx, id, &cfg)
	if err != nil {
		r.mu.Unlock()
		return nil, err
	}
	inst := newInstance(r, id, set, spec, ch, mod, limit, cfg.MaxPayload)
	r.instances[id] = inst
	r.wg.Add(1)
	r.mu.Unlock()

	first := make(chan error, 1)
	go inst.supervise(first)
	select {
	case err := <-first:
		if err != nil {
			<-inst.done
			return nil, err
		}
		return inst, nil
	case <-ctx.Done():
		inst.cancel()
		<-inst.done
		return nil, ctx.Err()
	}
}

// moduleBytes returns the module spec names (it is valid: it names one).
func (r *Runtime) moduleBytes(spec Spec) ([]byte, error) {
	if len(spec.Code) > 0 {
		return spec.Code, nil
	}
	if name, ok := strings.CutPrefix(spec.Module, "@"); ok {
		code, ok := r.opts.Modules[name]
		if !ok {
			return nil, fmt.Errorf("%w: wasm: no module %q is built in (have %s)", spear.ErrInvalidConfig, spec.Module, strings.Join(slices.Sorted(maps.Keys(r.opts.Modules)), ", "))
		}
		return code, nil
	}
	b, err := os.ReadFile(spec.Module)
	if err != nil {
		return nil, fmt.Errorf("%w: read wasm module: %w", spear.ErrConfig, err)
	}
	return b, nil
}

// Compile compiles code ahead of the first Start of it, which then starts
// at once. Errors are those of Start for a bad module.
func (r *Runtime) Compile(ctx context.Context, code []byte) error {
	_, err := r.compile(ctx, code)
	return err
}

// compile returns the compiled module of code, compiling it once per
// distinct content (by SHA-256) for the life of the runtime. Concurrent
// calls for the same bytes wait for one compilation.
func (r *Runtime) compile(ctx context.Context, code []byte) (*module, error) {
	key := sha256.Sum256(code)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, runtime.ErrClosed
	}
	m := r.modules[key]
	owner := m == nil
	if owner {
		m = &module{ready: make(chan struct{})}
		r.modules[key] = m
		r.compiles.Add(1) // under r.mu, so Close cannot be waiting yet
	}
	r.mu.Unlock()
	if owner {
		defer r.compiles.Done()
		start := time.Now()
		m.compiled, m.minMemory, m.err = r.compileNow(code)
		if m.err != nil {
			r.mu.Lock()
			delete(r.modules, key) // a bad module is not worth keeping
			r.mu.Unlock()
		} else {
			r.log.Info("wasm module compiled", "sha256", fmt.Sprintf("%x", key[:8]), "bytes", len(code), "took", time.Since(start))
		}
		close(m.ready)
	}
	select {
	case <-m.ready:
		return m, m.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// compileNow compiles code and checks that it is a WASI preview 1 command.
func (r *Runtime) compileNow(code []byte) (wazero.CompiledModule, uint64, error) {
	ctx := context.Background()
	cm, err := r.engine.CompileModule(ctx, code)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: invalid wasm module: %w", spear.ErrInvalidConfig, err)
	}
	fail := func(format string, args ...any) (wazero.CompiledModule, uint64, error) {
		cm.Close(ctx)
		return nil, 0, fmt.Errorf("%w: "+format, append([]any{spear.ErrInvalidConfig}, args...)...)
	}
	if _, ok := cm.ExportedFunctions()["_start"]; !ok {
		return fail("the module is not a WASI command: it exports no _start")
	}
	for _, fn := range cm.ImportedFunctions() {
		switch mod, name, _ := fn.Import(); mod {
		case wasi_snapshot_preview1.ModuleName:
		case hostModule:
			if err := checkHostImport(name, fn.ParamTypes(), fn.ResultTypes()); err != nil {
				return fail("%v", err)
			}
		default:
			return fail("the module imports %s.%s; only %s and %s are provided", mod, name, wasi_snapshot_preview1.ModuleName, hostModule)
		}
	}
	var minPages uint32
	for _, d := range cm.ExportedMemories() {
		minPages = max(minPages, d.Min())
	}
	for _, d := range cm.ImportedMemories() {
		minPages = max(minPages, d.Min())
	}
	return cm, uint64(minPages) * pageSize, nil
}

// Stop stops an instance: a terminate signal first, then, after its
// Settings.StopGrace (or when ctx ends), the module instance is closed. It
// waits until the instance is gone and its channel closed; calling it
// again, or for an instance that stopped by itself, returns nil at once.
func (r *Runtime) Stop(ctx context.Context, inst runtime.Instance) error {
	in, ok := inst.(*Instance)
	if !ok || in.rt != r {
		return fmt.Errorf("%w: %T is not an instance of this wasm runtime", spear.ErrUnsupportedRuntime, inst)
	}
	in.stop(ctx)
	return nil
}

// Close stops every instance (as Stop does, in parallel), then closes the
// wazero engine and its compiled modules. Calling it again does nothing.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	insts := make([]*Instance, 0, len(r.instances))
	for _, inst := range r.instances {
		insts = append(insts, inst)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, inst := range insts {
		wg.Go(func() { inst.stop(ctx) })
	}
	wg.Wait()
	r.wg.Wait()
	// A compilation cannot be interrupted, and closing the engine under
	// it crashes wazero: wait for it to finish.
	r.compiles.Wait()
	err := r.engine.Close(context.Background())
	r.cache.Close(context.Background())
	return err
}

// Instances returns the instances currently running (or being reset).
func (r *Runtime) Instances() []*Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Instance, 0, len(r.instances))
	for _, inst := range r.instances {
		out = append(out, inst)
	}
	return out
}

func (r *Runtime) forget(inst *Instance) {
	r.mu.Lock()
	if r.instances[inst.id] == inst {
		delete(r.instances, inst.id)
	}
	r.mu.Unlock()
}
