package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/leftover"
	"github.com/spear-go/spear/runtime"
)

// Defaults for zero Options and Settings fields.
const (
	DefaultLogLines     = 200
	DefaultStartTimeout = 10 * time.Second
	DefaultStopGrace    = 5 * time.Second
)

// startErrorLines is how many of the last output lines a failed start's
// error quotes.
const startErrorLines = 5

// Options configure a Runtime. Zero values mean the defaults.
type Options struct {
	// Factory creates the instances' channels. Required. The runtime does
	// not close it.
	Factory *channel.Factory
	// Logger receives the runtime's logs and the instances' output lines,
	// with the instance id attached; nil discards them.
	Logger *slog.Logger
	// LogLines is how many output lines are kept per instance for
	// Instance.Logs (default DefaultLogLines).
	LogLines int
	// Self is the executable that SelfCommand runs (default
	// os.Executable()).
	Self string
	// Worker is the command line WorkerCommand stands for: an executable
	// and its first arguments. Empty, WorkerCommand is refused.
	Worker []string
	// Cgroups says whether instances go in cgroups of their own (default
	// CgroupsAuto: when the machine allows it).
	Cgroups CgroupMode
	// CgroupParent is the cgroup v2 directory under which the runtime
	// makes its subtree (default: the agent's own cgroup, which must be
	// delegated to the agent's user).
	CgroupParent string
	// UserRange holds the user ids a function with user UserRange takes
	// one of per instance (none when zero).
	UserRange UIDRange
	// Leftovers records what the runtime starts (its cgroups, or its
	// instances' sessions), so that the next agent kills it if this one
	// dies; nil records nothing.
	Leftovers *leftover.Book
}

// check reports the problems of the options that an agent's
// configuration gives (its process section), each a *runtime.FieldError
// naming the setting there.
func (o Options) check() error {
	errs := []error{o.Cgroups.Validate()}
	if o.UserRange != (UIDRange{}) {
		errs = append(errs, o.UserRange.validate())
	}
	return errors.Join(errs...)
}

// validateOptions is the Kind's ValidateOptions: it checks the process
// section of an agent's configuration, as the agent gives New its
// settings, so that their mistakes are found when the configuration is
// loaded.
func validateOptions(section []byte) error {
	var s struct {
		Cgroups   CgroupMode `json:"cgroups"`
		UserRange string     `json:"user_range"`
	}
	if err := json.Unmarshal(section, &s); err != nil {
		return err
	}
	var errs []error
	o := Options{Cgroups: s.Cgroups}
	if s.UserRange != "" {
		var err error
		o.UserRange, err = ParseUIDRange(s.UserRange)
		errs = append(errs, err)
	}
	return errors.Join(append(errs, o.check())...)
}

// Runtime runs instances as child processes. It implements runtime.Runtime
// for spear.Process and is safe for concurrent use.
type Runtime struct {
	// Immutable after New.
	factory  *channel.Factory
	log      *slog.Logger
	logLines int
	self     string   // "" when os.Executable failed
	worker   []string // what WorkerCommand runs
	conf     *confiner
	ctx      context.Context // cancelled by Close, aborting starts in progress
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the instances' goroutines

	closeConf sync.Once // closes conf, once every instance is gone
	confErr   error

	mu         sync.Mutex // guards the fields below
	closed     bool
	instances  map[spear.InstanceID]*Instance // from Start until the instance is gone
	users      UIDRange                       // immutable
	usersTaken map[int]bool                   // user ids of the range in use
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns a process runtime. The error matches spear.ErrInvalidConfig
// when opts are unusable.
func New(opts Options) (*Runtime, error) {
	if opts.Factory == nil {
		return nil, fmt.Errorf("%w: process.Options.Factory is required", spear.ErrInvalidConfig)
	}
	if opts.LogLines < 0 {
		return nil, fmt.Errorf("%w: process.Options.LogLines is negative", spear.ErrInvalidConfig)
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	r := &Runtime{
		factory:    opts.Factory,
		log:        opts.Logger,
		logLines:   opts.LogLines,
		self:       opts.Self,
		worker:     slices.Clone(opts.Worker),
		instances:  map[spear.InstanceID]*Instance{},
		users:      opts.UserRange,
		usersTaken: map[int]bool{},
	}
	if r.self == "" {
		r.self, _ = os.Executable() // needed only for SelfCommand; Start reports it
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.logLines == 0 {
		r.logLines = DefaultLogLines
	}
	var err error
	if r.conf, err = newConfiner(opts.Cgroups, opts.CgroupParent, opts.Leftovers, r.log); err != nil {
		return nil, err
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Type returns spear.Process.
func (r *Runtime) Type() spear.RuntimeType { return spear.Process }

// Start runs spec, a Spec: its Command with its Args in its Dir, as its
// User, confined with its Limits (see the package documentation), with a
// minimal environment, its Env and the channel's credentials. It waits
// until the child connects and authenticates, within set.StartTimeout
// (default DefaultStartTimeout) and ctx; the instance is then
// StatusRunning. On failure the child's processes are killed, the child
// reaped and the channel closed.
//
// Errors are *spear.InstanceError values. They match
// spear.ErrInvalidConfig for a bad spec or a command that cannot be
// started, runtime.ErrExists for an id in use, runtime.ErrClosed after
// Close, spear.ErrTimeout when the child did not connect in time, and
// spear.ErrConnectionFailed when it exited first (the message has the
// exit status and its last output lines, and the error unwraps to the
// *exec.ExitError).
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
	switch spec.Command {
	case SelfCommand:
		if r.self == "" {
			return nil, fmt.Errorf("%w: command %s: the agent's own executable is unknown (set process.Options.Self)", spear.ErrConfig, SelfCommand)
		}
		spec.Command = r.self
	case WorkerCommand:
		if len(r.worker) == 0 {
			return nil, fmt.Errorf("%w: command %s: no worker is configured (set process.Options.Worker)", spear.ErrConfig, WorkerCommand)
		}
		spec.Command = r.worker[0]
		spec.Args = append(slices.Clone(r.worker[1:]), spec.Args...)
	}
	i, err := r.reserve(id, set)
	if err != nil {
		return nil, err
	}
	if i.acct, err = r.takeAccount(spec.User); err != nil {
		i.fail("no user to run as")
		return nil, err
	}
	var cfg channel.Config
	if set.Channel != nil {
		cfg = *set.Channel
	}
	cfg.CheckPeer = i.peerCheck
	if i.acct.other {
		cfg.SocketOwner = &channel.Owner{UID: i.acct.uid, GID: i.acct.gid}
	}
	ch, err := r.factory.Create(ctx, id, &cfg)
	if err != nil {
		i.fail("channel creation failed")
		return nil, err
	}
	i.ch = ch
	if i.conf, err = r.conf.confine(id.Name, spec.Limits); err != nil {
		ch.Close()
		i.fail("confinement failed")
		return nil, err
	}
	if err := i.launch(spec); err != nil {
		ch.Close()
		i.conf.notStarted()
		i.fail("process failed to start")
		return nil, err
	}
	i.log.Info("instance process started", "command", spec.Command, "transport", string(ch.Type()), "confinement", r.conf.describe())
	if err := i.waitReady(ctx, set.StartTimeout); err != nil {
		i.abort()
		if errors.Is(err, errExitedEarly) {
			return nil, i.earlyExitError()
		}
		return nil, err
	}
	r.wg.Add(1) // the reaper holds a count, so the counter is not zero
	go i.watch()
	i.log.Info("instance running")
	return i, nil
}

// reserve registers a new instance under id, refusing an id in use here.
// (One the factory has a channel for is refused by Create.)
func (r *Runtime) reserve(id spear.InstanceID, set runtime.Settings) (*Instance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, runtime.ErrClosed
	}
	if _, ok := r.instances[id]; ok {
		return nil, fmt.Errorf("%w: running", runtime.ErrExists)
	}
	i := &Instance{
		rt:       r,
		id:       id,
		function: set.Function,
		grace:    set.StopGrace,
		created:  time.Now(),
		out:      runtime.NewOutput(nil, r.logLines),
		log:      r.log.With("instance", id.String(), "runtime", id.Runtime.String()),
		forked:   make(chan struct{}),
		done:     make(chan struct{}),
		status:   runtime.StatusStarting,
	}
	i.exitCtx, i.markExit = context.WithCancel(context.Background())
	r.instances[id] = i
	return i, nil
}

// forget removes a gone instance, and gives its user id back.
func (r *Runtime) forget(i *Instance) {
	r.giveBack(i.acct)
	r.mu.Lock()
	if r.instances[i.id] == i {
		delete(r.instances, i.id)
	}
	r.mu.Unlock()
}

// fail ends an instance whose process never ran.
func (i *Instance) fail(reason string) {
	i.mu.Lock()
	i.status, i.reason = runtime.StatusStopped, reason
	i.mu.Unlock()
	i.markExit()
	i.out.Close()
	i.rt.forget(i)
	close(i.done)
}

// launch starts the process and its reaper.
func (i *Instance) launch(spec Spec) error {
	cmd := exec.Command(spec.Command, spec.Args...)
	cmd.Dir = spec.Dir
	// The environment is never logged. Its SPEAR_* variables come last.
	cmd.Env = childEnv(os.Environ(), spec.InheritEnv, i.acct.home, spec.Env)
	release, err := i.ch.Credentials().HandOver(cmd, spec.Secret)
	if err != nil {
		return err
	}
	defer release() // once the child has its copy, or never started
	// A nil Stdin is /dev/null.
	cmd.SysProcAttr = sysProcAttr()
	cmd.SysProcAttr.Credential = i.acct.credential()
	i.conf.prepare(cmd)
	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("%w: output pipe: %w", spear.ErrInvalidConfig, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fmt.Errorf("%w: output pipe: %w", spear.ErrInvalidConfig, err)
	}
	// *os.File outputs go to the child as they are: no copying goroutine
	// in exec, and Wait does not wait for the pipes.
	cmd.Stdout, cmd.Stderr = outW, errW
	started := make(chan error, 1)
	i.rt.wg.Add(1)
	go i.run(cmd, started, outR, errR, outW, errW)
	if err := <-started; err != nil {
		return fmt.Errorf("%w: start %s: %w", spear.ErrInvalidConfig, spec.Command, err)
	}
	return nil
}

// errExitedEarly marks a start that failed because the process exited.
var errExitedEarly = errors.New("process exited before connecting")

// waitReady waits until the channel is connected, the process exits, the
// timeout passes, ctx ends or the runtime closes; on success the instance
// is running.
func (i *Instance) waitReady(ctx context.Context, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer context.AfterFunc(i.exitCtx, cancel)()
	defer context.AfterFunc(i.rt.ctx, cancel)()
	err := i.ch.WaitConnected(wctx)

	i.mu.Lock()
	defer i.mu.Unlock()
	// Under i.mu, so that an exit either comes after running (and the
	// reaper reports it) or is seen here.
	switch {
	case i.exited:
		return errExitedEarly
	case ctx.Err() != nil:
		return spear.ContextError(ctx)
	case i.rt.ctx.Err() != nil:
		return runtime.ErrClosed
	case err == nil:
		i.status, i.lastHealth = runtime.StatusRunning, time.Now()
		return nil
	case wctx.Err() != nil:
		return fmt.Errorf("%w: the instance did not connect within %s%s", spear.ErrTimeout, timeout, lastOutput(i.out))
	}
	return err
}

// earlyExitError describes a process that exited before connecting.
func (i *Instance) earlyExitError() error {
	st := i.ExitState()
	if st == nil { // it could not be waited for; the reason says why
		return fmt.Errorf("%w: process %s before connecting%s", spear.ErrConnectionFailed, i.Info().Reason, lastOutput(i.out))
	}
	return fmt.Errorf("%w: process exited before connecting (%w)%s",
		spear.ErrConnectionFailed, &exec.ExitError{ProcessState: st}, lastOutput(i.out))
}

// lastOutput quotes the last output lines for an error message.
func lastOutput(out *runtime.Output) string {
	lines := out.Last(startErrorLines)
	if len(lines) == 0 {
		return "; no output"
	}
	return fmt.Sprintf("; last output: %q", lines)
}

// Stop stops inst, which must come from this runtime: a terminate signal
// over its channel (when connected), SIGTERM to its process group after
// its Settings.StopGrace, SIGKILL after another. It returns once the process
// is reaped and the channel closed, and returns nil at once for an
// instance already gone. When ctx ends first it returns an error matching
// spear.ErrTimeout (or context.Canceled) while stopping goes on.
func (r *Runtime) Stop(ctx context.Context, inst runtime.Instance) error {
	i, ok := inst.(*Instance)
	if !ok || i.rt != r {
		return fmt.Errorf("%w: not an instance of this process runtime", spear.ErrUnsupportedRuntime)
	}
	i.beginStop()
	select {
	case <-i.done:
		return nil
	case <-ctx.Done():
		return spear.InstanceErr(i.id, "stop", spear.ContextError(ctx))
	}
}

// Close stops every instance concurrently, and aborts starts in progress.
// It waits for them within ctx, and returns their errors joined. Start
// fails after Close. Idempotent; the factory is left open.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	insts := make([]*Instance, 0, len(r.instances))
	for _, i := range r.instances {
		insts = append(insts, i)
	}
	r.mu.Unlock()
	r.cancel()

	errs := make([]error, len(insts))
	var wg sync.WaitGroup
	for k, i := range insts {
		wg.Go(func() { errs[k] = r.Stop(ctx, i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Every instance is gone; its goroutines are returning.
	r.wg.Wait()
	r.closeConf.Do(func() { r.confErr = r.conf.close() })
	return r.confErr
}
