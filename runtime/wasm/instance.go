package wasm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/sys"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/transport/memory"
)

// Instance is one wasm instance: a channel and, behind it, a module
// instance that is replaced whenever it fails. It implements
// runtime.Instance and is safe for concurrent use.
//
// While a replacement is under way Info reports runtime.StatusDegraded,
// and requests fail fast with spear.ErrNotConnected, spear.ErrSendFailed,
// an error matching spear.ErrConnectionFailed, or CodeUnavailable;
// WaitRunning waits for the replacement. (The old connection is closed
// without a CLOSE frame on purpose: requests racing with the reset then
// fail as connection failures, which invite a retry, not as a closed
// channel.)
type Instance struct {
	// Immutable after construction.
	rt           *Runtime
	id           spear.InstanceID
	function     string
	ch           *channel.Channel
	mod          *module
	limit        uint64 // linear memory cap in bytes
	maxPayload   uint32
	args, env    []string
	startTimeout time.Duration
	stopGrace    time.Duration
	created      time.Time
	log          *slog.Logger
	logs         *guestLog
	ctx          context.Context // ends when the instance must end now
	cancel       context.CancelFunc
	done         chan struct{} // closed when the instance has stopped

	stopping atomic.Bool // Stop was called
	resets   atomic.Int64

	mu      sync.Mutex // guards the fields below
	status  runtime.Status
	reason  string
	checked time.Time     // last answer from the guest
	changed chan struct{} // closed and replaced on every status change
}

var _ runtime.Instance = (*Instance)(nil)

func newInstance(r *Runtime, id spear.InstanceID, set runtime.Settings, spec Spec, ch *channel.Channel, mod *module, limit uint64, maxPayload uint32) *Instance {
	inst := &Instance{
		rt:           r,
		id:           id,
		function:     set.Function,
		ch:           ch,
		mod:          mod,
		limit:        limit,
		maxPayload:   maxPayload,
		args:         append([]string{cmp.Or(set.Function, "wasm")}, spec.Args...),
		env:          guestEnv(spec.Env.List(), guestCredentials(ch.Credentials())),
		startTimeout: set.StartTimeout,
		stopGrace:    set.StopGrace,
		created:      time.Now(),
		done:         make(chan struct{}),
		status:       runtime.StatusStarting,
		changed:      make(chan struct{}),
	}
	inst.log = r.log.With("instance", id.String(), "function", set.Function)
	inst.logs = newGuestLog(runtime.NewOutput(inst.log, r.opts.LogLines))
	inst.ctx, inst.cancel = context.WithCancel(context.Background())
	return inst
}

// guestCredentials are the SPEAR_* variables of a guest, its secret among
// them: a guest's WASI environment is the agent's memory, which no other
// process can read as it could a process's environment.
func guestCredentials(cr channel.Credentials) []string {
	return append(cr.Env(), cr.SecretEnv())
}

// guestEnv is the guest's WASI environment: the spec's variables, except
// that the channel's SPEAR_* credentials always win (guests may read the
// first or the last of duplicates).
func guestEnv(spec, creds []string) []string {
	env := make([]string, 0, len(spec)+len(creds))
	for _, kv := range spec {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(creds, func(c string) bool { return strings.HasPrefix(c, k+"=") }) {
			env = append(env, kv)
		}
	}
	return append(env, creds...)
}

// ID implements runtime.Instance.
func (inst *Instance) ID() spear.InstanceID { return inst.id }

// Channel implements runtime.Instance.
func (inst *Instance) Channel() *channel.Channel { return inst.ch }

// Done implements runtime.Instance.
func (inst *Instance) Done() <-chan struct{} { return inst.done }

// Logs implements runtime.Instance: the guest's most recent stderr lines.
func (inst *Instance) Logs(n int) []string { return inst.logs.out.Last(n) }

// FollowLogs implements runtime.Follower: it ends once the instance has
// stopped.
func (inst *Instance) FollowLogs(ctx context.Context, tail int, fn func(line string) error) error {
	return inst.logs.out.Follow(ctx, tail, fn)
}

// Resets returns how many times the module instance was replaced.
func (inst *Instance) Resets() int { return int(inst.resets.Load()) }

// Info implements runtime.Instance.
func (inst *Instance) Info() runtime.Info {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	return runtime.Info{
		ID:              inst.id,
		Function:        inst.function,
		Status:          inst.status,
		Reason:          inst.reason,
		Created:         inst.created,
		LastHealthCheck: inst.checked,
	}
}

// WaitRunning waits until the instance is running: started, or replaced
// after a failure. It fails with an error matching spear.ErrChannelClosed
// once the instance has stopped, and with ctx's error.
func (inst *Instance) WaitRunning(ctx context.Context) error {
	for {
		inst.mu.Lock()
		status, reason, changed := inst.status, inst.reason, inst.changed
		inst.mu.Unlock()
		switch status {
		case runtime.StatusRunning:
			return nil
		case runtime.StatusStopped, runtime.StatusStopping:
			return spear.InstanceErr(inst.id, "wait running", fmt.Errorf("%w: instance %s: %s", spear.ErrChannelClosed, status, reason))
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return spear.InstanceErr(inst.id, "wait running", ctx.Err())
		}
	}
}

func (inst *Instance) setStatus(s runtime.Status, reason string) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if inst.status == runtime.StatusStopped || inst.status == runtime.StatusStopping && s != runtime.StatusStopped {
		return
	}
	inst.status, inst.reason = s, reason
	close(inst.changed)
	inst.changed = make(chan struct{})
}

func (inst *Instance) touch() {
	inst.mu.Lock()
	inst.checked = time.Now()
	inst.mu.Unlock()
}

// stop is Runtime.Stop: ask the guest to terminate, wait up to the grace
// period, then end it.
func (inst *Instance) stop(ctx context.Context) {
	if inst.stopping.CompareAndSwap(false, true) {
		inst.setStatus(runtime.StatusStopping, "stopped by the agent")
		gctx, cancel := context.WithTimeout(ctx, inst.stopGrace)
		if err := channel.SendSignal(gctx, inst.ch, channel.SignalTerminate, "", nil); err == nil {
			select {
			case <-inst.done:
			case <-gctx.Done():
			}
		}
		cancel()
	}
	inst.cancel()
	<-inst.done
}

// outcome is what the supervisor decided about an incarnation: the
// instance stops (stop, with reason), or the incarnation is replaced after
// failing the request it held with code and msg.
type outcome struct {
	stop   bool
	reason string
	code   spear.Code
	msg    string
}

// supervise is the instance's supervisor goroutine; see the package
// comment. It reports the first incarnation's start on first.
func (inst *Instance) supervise(first chan<- error) {
	defer inst.rt.wg.Done()
	run, err := inst.launch()
	if err == nil {
		// Running before Start returns, so its caller never sees
		// "starting" on an instance that answers.
		inst.setStatus(runtime.StatusRunning, "")
	}
	first <- err
	if err != nil {
		inst.finish("failed to start: " + err.Error())
		return
	}
	inst.log.Info("wasm instance started", "memory_limit", inst.limit)
	inst.finish(inst.serve(run))
}

// serve watches incarnations, replacing failed ones, until the instance
// stops; it returns why.
func (inst *Instance) serve(run *incarnation) string {
	for {
		o := inst.watch(run)
		run.settle()
		run.kill()
		if o.stop {
			run.fail(spear.CodeUnavailable, "wasm instance stopped: "+o.reason, "")
			run.close()
			return o.reason
		}
		inst.resets.Add(1)
		inst.setStatus(runtime.StatusDegraded, o.msg)
		inst.log.Warn("wasm instance reset", "reason", o.msg, "code", o.code.String(), "err", run.modErr)
		run.fail(o.code, o.msg+"; wasm instance reset", "wasm instance reset before the request started; retry")
		run.close()
		// The channel must drop the old connection before the new one
		// binds, so that WaitConnected below waits for the new one.
		wait, cancel := context.WithTimeout(inst.ctx, inst.startTimeout)
		select {
		case <-run.gone:
		case <-wait.Done():
		}
		cancel()
		if inst.ctx.Err() != nil || inst.stopping.Load() {
			return "stopped by the agent"
		}
		next, err := inst.launch()
		switch {
		case err != nil && (inst.ctx.Err() != nil || inst.stopping.Load()):
			return "stopped by the agent"
		case err != nil:
			return "reset failed: " + err.Error()
		}
		run = next
		inst.setStatus(runtime.StatusRunning, "")
	}
}

// watch waits until run needs the supervisor: the instance is stopping,
// the guest exited or trapped, the request in flight was cancelled or ran
// past its deadline, or the guest broke the protocol.
func (inst *Instance) watch(run *incarnation) outcome {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if d, ok := run.in.nextDeadline(); ok {
			timer.Reset(time.Until(d))
		} else {
			timer.Stop()
		}
		select {
		case <-inst.ctx.Done():
			return outcome{stop: true, reason: "stopped by the agent"}
		case <-run.modDone:
			return inst.exited(run)
		case <-run.in.kick:
			if o, ok := run.in.takeFault(); ok {
				return o
			}
		case now := <-timer.C:
			inflight, expired := run.in.expire(now)
			for _, id := range expired {
				run.answer(id, spear.CodeDeadlineExceeded, "deadline exceeded before the wasm instance started the request")
			}
			if inflight {
				return outcome{code: spear.CodeDeadlineExceeded, msg: "deadline exceeded"}
			}
		}
	}
}

// exited classifies the end of run's module.
func (inst *Instance) exited(run *incarnation) outcome {
	err := run.modErr
	var exit *sys.ExitError
	switch {
	case inst.stopping.Load() || inst.ctx.Err() != nil:
		return outcome{stop: true, reason: "stopped by the agent"}
	case err == nil:
		reason := "wasm guest exited"
		if cause := run.in.closeCause(); cause != nil {
			reason += " after its connection ended"
		}
		return outcome{stop: true, reason: reason}
	case run.mem.exhausted.Load():
		return outcome{code: spear.CodeResourceExhausted, msg: fmt.Sprintf("wasm guest ran out of memory (limit %d bytes)", inst.limit)}
	case errors.As(err, &exit):
		return outcome{code: spear.CodeInternal, msg: fmt.Sprintf("wasm guest trapped: exited with status %d", exit.ExitCode())}
	}
	return outcome{code: spear.CodeInternal, msg: "wasm guest trapped: " + trapMessage(err)}
}

// trapMessage is the first line of a trap without wazero's prefix and
// stack trace, for example "wasm error: unreachable".
func trapMessage(err error) string {
	if inner := errors.Unwrap(err); inner != nil {
		err = inner
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return msg
}

// launch starts an incarnation and waits, within the start timeout, until
// its guest has authenticated and the channel has bound its connection.
func (inst *Instance) launch() (*incarnation, error) {
	ctx, cancel := context.WithTimeout(inst.ctx, inst.startTimeout)
	defer cancel()
	conn, err := memory.Dial(ctx, inst.ch.Credentials().Address)
	if err != nil {
		return nil, err
	}
	run := newIncarnation(inst, conn)
	run.start()

	// Wait for the channel, but not for a guest that already died.
	wctx, wcancel := context.WithCancel(ctx)
	watcher := make(chan struct{})
	go func() {
		defer close(watcher)
		select {
		case <-run.modDone:
			wcancel()
		case <-wctx.Done():
		}
	}()
	err = inst.ch.WaitConnected(wctx)
	wcancel()
	<-watcher
	if err != nil {
		run.kill()
		run.close()
		select {
		case <-run.modDone:
			if ctx.Err() == nil {
				err = fmt.Errorf("%w: wasm guest ended before connecting: %s", spear.ErrConnectionFailed, describeExit(run.modErr))
			}
		default:
		}
		return nil, err
	}
	run.gone = inst.ch.Disconnected()
	return run, nil
}

func describeExit(err error) string {
	var exit *sys.ExitError
	switch {
	case err == nil:
		return "exited with status 0"
	case errors.As(err, &exit):
		return fmt.Sprintf("exited with status %d", exit.ExitCode())
	}
	return trapMessage(err)
}

// finish ends the instance: its channel closes, Info reports it stopped
// with reason, Done is closed.
func (inst *Instance) finish(reason string) {
	inst.ch.Lost("the wasm module ended: " + reason)
	inst.logs.flush()
	inst.logs.out.Close()
	inst.setStatus(runtime.StatusStopped, reason)
	inst.rt.forget(inst)
	inst.cancel()
	inst.log.Info("wasm instance stopped", "reason", reason)
	close(inst.done)
}
