package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/transport"
)

const (
	// healthEvery is how often the watcher samples the channel's
	// statistics for Info.LastHealthCheck.
	healthEvery = time.Second
	// maxSignalWait bounds the wait for the instance to acknowledge the
	// terminate signal (StopGrace bounds it too, when shorter).
	maxSignalWait = 2 * time.Second
	// drainTimeout bounds the wait for the output pipes to reach EOF once
	// the process is reaped; only a process that left the group and kept
	// the pipes can hold them open that long.
	drainTimeout = time.Second
	// connDrainTimeout bounds how long an exited instance's channel waits
	// for its connection to deliver what the instance wrote before it
	// exited (see exit).
	connDrainTimeout = time.Second
)

// Instance is one child process and its channel. It implements
// runtime.Instance; its methods are safe for concurrent use.
//
// Lifecycle: starting -> running <-> unhealthy -> stopping -> stopped, or
// starting -> stopped when Start fails. Once the process runs, the reaper
// alone moves the instance to stopped, after the process has been reaped.
type Instance struct {
	// Immutable after Start launched the process.
	rt       *Runtime
	id       spear.InstanceID
	function string
	grace    time.Duration
	created  time.Time
	ch       *channel.Channel
	out      *runtime.Output
	log      *slog.Logger
	acct     account      // the user the process runs as
	conf     *confinement // its processes' cgroup or session

	exitCtx  context.Context // cancelled once the process has exited (before it is reaped)
	markExit context.CancelFunc
	forked   chan struct{} // closed once pid is set, or the start failed
	done     chan struct{} // closed when the instance is fully gone

	mu         sync.Mutex // guards the fields below
	pid        int        // 0 until the process started
	status     runtime.Status
	reason     string
	lastHealth time.Time
	exited     bool // the process has exited: its group must no longer be signalled
	stopAsked  bool // Stop asked, before the process exited on its own
	state      *os.ProcessState
}

var _ runtime.Instance = (*Instance)(nil)

// peerCheck is the channel's peer check (channel.Config.CheckPeer): only a
// process of the child's session, run by its user, may connect. A
// connection that comes before the child's pid is known waits for it,
// which takes no longer than the fork.
func (i *Instance) peerCheck(info transport.Info) error {
	if info.PeerPID < 0 {
		return checkPeer(info, 0, 0) // nothing to check the peer against
	}
	select {
	case <-i.forked:
	case <-i.done:
	}
	i.mu.Lock()
	pid := i.pid
	i.mu.Unlock()
	if pid <= 0 {
		return fmt.Errorf("%w: the instance's process never started", spear.ErrAuthFailed)
	}
	return checkPeer(info, pid, i.acct.uid)
}

// ID returns the instance's id.
func (i *Instance) ID() spear.InstanceID { return i.id }

// Channel returns the instance's channel. It is closed once the process
// has exited.
func (i *Instance) Channel() *channel.Channel { return i.ch }

// Done is closed when the process has been reaped, its channel closed and
// its output drained; Info then reports StatusStopped.
func (i *Instance) Done() <-chan struct{} { return i.done }

// Info returns the instance's state. PID is the child's process id, which
// is also its process group id.
func (i *Instance) Info() runtime.Info {
	i.mu.Lock()
	defer i.mu.Unlock()
	return runtime.Info{
		ID:              i.id,
		Function:        i.function,
		Status:          i.status,
		Reason:          i.reason,
		Created:         i.created,
		LastHealthCheck: i.lastHealth,
		PID:             i.pid,
	}
}

// Logs returns up to n of the latest lines the process wrote to stdout and
// stderr, oldest first, in the order the agent read them. The runtime keeps
// Options.LogLines lines per instance, also after it stopped.
func (i *Instance) Logs(n int) []string { return i.out.Last(n) }

// FollowLogs implements runtime.Follower: it ends once the process has
// exited and its output pipes are drained.
func (i *Instance) FollowLogs(ctx context.Context, tail int, fn func(line string) error) error {
	return i.out.Follow(ctx, tail, fn)
}

// ExitState returns how the process ended, or nil while it runs.
func (i *Instance) ExitState() *os.ProcessState {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.state
}

// run is the reaper: it starts cmd and reports the result on started,
// then waits for the process and tears the instance down. It owns the
// four pipe ends. While it waits it is a parked goroutine: no OS thread
// is held per instance (see forker and exitWatch).
func (i *Instance) run(cmd *exec.Cmd, started chan<- error, outR, errR, outW, errW *os.File) {
	defer i.rt.wg.Done()
	err := startChild(cmd, childLimits{rlimits: i.conf.rlimits, uid: i.acct.uid, gid: i.acct.gid})
	// The child's ends belong to the child now.
	outW.Close()
	errW.Close()
	if err != nil {
		close(i.forked)
		outR.Close()
		errR.Close()
		started <- err
		return
	}
	defer childReaped() // after cmd.Wait below
	pid := cmd.Process.Pid
	if err := i.conf.started(pid, i.acct.uid); err != nil {
		i.log.Warn("instance not recorded for cleanup after a crash of the agent", "err", err)
	}
	i.mu.Lock()
	i.pid = pid
	i.mu.Unlock()
	close(i.forked) // peer checks waiting for the pid go on
	i.log = i.log.With("pid", pid)
	i.out.SetLogger(i.log)
	outDone, errDone := make(chan struct{}), make(chan struct{})
	go capture(outR, "stdout", i.out, outDone)
	go capture(errR, "stderr", i.out, errDone)
	watch, werr := watchExit(pid)
	started <- nil

	peeked := werr == nil && watch.wait()
	if peeked {
		i.exit()
		// The instance is all its processes: kill what the leader left
		// behind, while its zombie still pins its group and session ids.
		i.conf.leaderExited()
	}
	waitErr := cmd.Wait() // at once when peeked; on an exit status, the state says it all
	if !peeked {
		i.exit()
	}
	oom, err := i.conf.reaped()
	if err != nil {
		i.log.Warn("instance processes not all gone", "err", err)
	}

	timer := time.NewTimer(drainTimeout)
	for _, d := range []chan struct{}{outDone, errDone} {
		select {
		case <-d:
		case <-timer.C:
			i.log.Warn("instance output still open after exit; closing it")
			outR.Close()
			errR.Close()
			<-d
		}
	}
	timer.Stop()
	outR.Close()
	errR.Close()
	i.out.Close()

	i.finish(cmd.ProcessState, waitErr, oom)
}

// exit records that the process has exited: its group is not signalled
// again and the channel is closed as lost, so pending requests fail with
// spear.ErrPeerGone. Answers the child wrote just before it exited may
// still be unread in the socket, so the channel first waits, up to
// connDrainTimeout, for its connections to end: the reader takes those
// answers and then sees the end of the stream the exit caused. Only a
// descendant that kept the socket open makes the wait last.
func (i *Instance) exit() {
	i.mu.Lock()
	i.exited = true
	i.mu.Unlock()
	i.markExit()
	t := time.NewTimer(connDrainTimeout)
	select {
	case <-i.ch.Disconnected():
	case <-t.C:
	}
	t.Stop()
	i.ch.Lost("the instance's process exited")
}

// finish marks the instance stopped and closes Done. oom says the kernel
// killed it for going over its memory limit, which is then its reason even
// when it was being stopped.
func (i *Instance) finish(st *os.ProcessState, waitErr error, oom bool) {
	how := describeExit(st, waitErr)
	if oom {
		how = fmt.Sprintf("%s (memory limit %s; %s)", ReasonOutOfMemory, runtime.Bytes(i.conf.memoryLimit()), how)
	}
	i.mu.Lock()
	i.state = st
	i.status = runtime.StatusStopped
	i.reason = how
	if i.stopAsked && !oom {
		i.reason = "stopped"
	}
	stopAsked := i.stopAsked
	i.mu.Unlock()
	switch {
	case stopAsked:
		i.log.Info("instance stopped", "exit", how)
	case st != nil && st.Success():
		i.log.Info("instance exited", "exit", how)
	default:
		i.log.Warn("instance exited", "exit", how)
	}
	i.rt.forget(i)
	close(i.done)
}

// ReasonOutOfMemory begins the stop reason (runtime.Info.Reason) of an
// instance the kernel killed for going over its memory limit.
const ReasonOutOfMemory = "out of memory"

// describeExit says how a process ended: "exited with status 3" or
// "killed by signal: killed". st is nil when it could not be waited for
// (waitErr says why).
func describeExit(st *os.ProcessState, waitErr error) string {
	if st == nil {
		return fmt.Sprintf("exited; status unknown: %v", waitErr)
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by signal: " + ws.Signal().String()
	}
	return fmt.Sprintf("exited with status %d", st.ExitCode())
}

// signalGroup sends sig to the instance's process group, unless the
// process has exited (its group id could then name another group).
func (i *Instance) signalGroup(sig syscall.Signal) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.exited || i.pid <= 0 {
		return
	}
	if err := syscall.Kill(-i.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		i.log.Warn("signalling the instance's process group failed", "signal", sig.String(), "err", err)
	}
}

// killAll SIGKILLs all the instance's processes, unless the process has
// exited (the reaper then kills the rest).
func (i *Instance) killAll() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.exited || i.pid <= 0 {
		return
	}
	if err := i.conf.kill(); err != nil {
		i.log.Warn("killing the instance failed", "err", err)
	}
}

// abort kills a starting instance and waits until it is gone.
func (i *Instance) abort() {
	i.killAll()
	<-i.done
}

// beginStop moves a started instance to stopping and starts escalating.
// It does nothing for an instance that is stopping or gone, or still
// starting (Start then fails by itself, the runtime being closed).
func (i *Instance) beginStop() {
	i.mu.Lock()
	defer i.mu.Unlock()
	switch i.status {
	case runtime.StatusRunning, runtime.StatusUnhealthy, runtime.StatusDegraded:
	default:
		return
	}
	i.status, i.reason = runtime.StatusStopping, "stop requested"
	if i.exited {
		return // it ended on its own; the reaper reports why
	}
	i.stopAsked = true
	i.rt.wg.Add(1) // the reaper holds a count, so the counter is not zero
	go i.escalate()
}

// escalate asks the instance to terminate, then forces it: a terminate
// signal over the channel, SIGTERM to the group after the grace, SIGKILL
// after another. It returns once the process has exited.
func (i *Instance) escalate() {
	defer i.rt.wg.Done()
	if i.ch.IsConnected() {
		ctx, cancel := context.WithTimeout(i.exitCtx, min(i.grace, maxSignalWait))
		err := channel.SendSignal(ctx, i.ch, channel.SignalTerminate, "", nil)
		cancel()
		if err != nil && i.exitCtx.Err() == nil {
			i.log.Debug("terminate signal not acknowledged", "err", err)
		}
	}
	if i.waitExit(i.grace) {
		return
	}
	i.log.Info("instance still running after the terminate signal; sending SIGTERM", "grace", i.grace)
	i.signalGroup(syscall.SIGTERM)
	if i.waitExit(i.grace) {
		return
	}
	i.log.Warn("instance ignored SIGTERM; sending SIGKILL", "grace", i.grace)
	i.killAll()
	<-i.exitCtx.Done()
}

// waitExit waits up to d for the process to exit and reports whether it
// did.
func (i *Instance) waitExit(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-i.exitCtx.Done():
		return true
	case <-t.C:
		return false
	}
}

// watch follows the channel from running until the process exits:
// disconnected means unhealthy until the instance connects again, and
// frames arriving (answers, heartbeats) advance LastHealthCheck.
func (i *Instance) watch() {
	defer i.rt.wg.Done()
	tick := time.NewTicker(healthEvery)
	defer tick.Stop()
	seen := i.ch.Stats().MessagesReceived
	for {
		gone := i.ch.Disconnected()
		select {
		case <-i.exitCtx.Done():
			return
		case <-tick.C:
			if n := i.ch.Stats().MessagesReceived; n != seen && i.ch.IsConnected() {
				seen = n
				i.mu.Lock()
				i.lastHealth = time.Now()
				i.mu.Unlock()
			}
		case <-gone:
			if !i.setConnected(false) {
				return
			}
			if i.ch.WaitConnected(i.exitCtx) != nil {
				return
			}
			if !i.setConnected(true) {
				return
			}
		}
	}
}

// setConnected records a disconnection or reconnection of a running
// instance and reports whether the instance is still running (or
// unhealthy), so that watching goes on.
func (i *Instance) setConnected(ok bool) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	switch i.status {
	case runtime.StatusRunning, runtime.StatusUnhealthy, runtime.StatusDegraded:
	default:
		return false
	}
	if i.exited {
		return false
	}
	if ok {
		i.status, i.reason, i.lastHealth = runtime.StatusRunning, "", time.Now()
		i.log.Info("instance reconnected")
		return true
	}
	i.status, i.reason = runtime.StatusUnhealthy, "channel disconnected; waiting for the instance to reconnect"
	i.log.Warn("instance disconnected from its channel")
	return true
}
