package process

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr makes the child the leader of a new session, and so of a
// new process group: signals to the group reach everything it starts, and
// the session is what the peer check admits (peer.go). The kernel SIGKILLs
// the child when the thread that forked it ends (see forker).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
}

// forker starts every child of the process from one OS thread.
//
// The parent-death signal fires when the thread that forked the child
// ends, not when the agent does. The Go runtime ends a thread when a
// goroutine locked to it returns still locked, so children must be forked
// from a thread nobody else can take down. Instead of pinning one thread
// per child for its whole life, one goroutine locked to its thread forks
// them all, and lives as long as any child it forked: when the last one
// has been reaped it returns, still locked, and its thread ends with it;
// the next start makes a new one. However many instances run, they hold
// one thread between them.
var forker struct {
	mu   sync.Mutex
	reqs chan forkRequest // nil when no forking goroutine runs
	live int              // children forked and not yet reaped
}

// forkRequest asks the forking goroutine to start cmd with rlimits.
type forkRequest struct {
	cmd     *exec.Cmd
	rlimits []rlimit
	done    chan<- error
}

// rlimit is a resource limit (soft and hard) to set on a child.
type rlimit struct {
	resource int
	value    uint64
}

// startChild starts cmd from the forking thread, with rlimits set before
// its program runs. Unless it fails, the caller must call childReaped
// once the process has been waited for.
func startChild(cmd *exec.Cmd, rlimits []rlimit) error {
	forker.mu.Lock()
	if forker.reqs == nil {
		forker.reqs = make(chan forkRequest)
		go forkLoop(forker.reqs)
	}
	forker.live++
	reqs := forker.reqs
	forker.mu.Unlock()
	done := make(chan error, 1)
	reqs <- forkRequest{cmd: cmd, rlimits: rlimits, done: done}
	err := <-done
	if err != nil {
		childReaped()
	}
	return err
}

// childReaped records that a child startChild started has been reaped;
// after the last one, the forking goroutine and its thread end.
func childReaped() {
	forker.mu.Lock()
	defer forker.mu.Unlock()
	forker.live--
	if forker.live == 0 {
		close(forker.reqs)
		forker.reqs = nil
	}
}

// forkLoop is the forking goroutine. It never unlocks its thread, so the
// thread ends when it returns.
func forkLoop(reqs <-chan forkRequest) {
	goruntime.LockOSThread()
	for r := range reqs {
		r.done <- startLimited(r.cmd, r.rlimits)
	}
}

// startLimited starts cmd with rlimits set before its program runs. Go
// cannot set them between fork and exec, and setting them once the child
// runs would leave it a moment unbounded, so the child starts traced
// (PTRACE_TRACEME): it stops right after exec, the forking thread, its
// tracer, sets its limits (prlimit) and lets it go (PTRACE_DETACH).
func startLimited(cmd *exec.Cmd, rlimits []rlimit) error {
	if len(rlimits) == 0 {
		return cmd.Start()
	}
	cmd.SysProcAttr.Ptrace = true
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w (resource limits without cgroups start the process traced, which needs ptrace)", err)
	}
	pid := cmd.Process.Pid
	var info unix.Siginfo
	err := ignoringEINTR(func() error {
		return unix.Waitid(unix.P_PID, pid, &info, unix.WSTOPPED|unix.WEXITED|unix.WNOWAIT, nil)
	})
	if err != nil || info.Code != cldTrapped {
		return nil // it died before its program ran; the reaper reports how
	}
	// A process that cannot be limited does not run.
	abandon := func(err error) error {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	for _, l := range rlimits {
		if err := unix.Prlimit(pid, l.resource, &unix.Rlimit{Cur: l.value, Max: l.value}, nil); err != nil {
			return abandon(fmt.Errorf("set resource limit %d: %w", l.resource, err))
		}
	}
	if err := unix.PtraceDetach(pid); err != nil {
		return abandon(fmt.Errorf("release the traced process: %w", err))
	}
	return nil
}

// cldTrapped is siginfo's si_code for a traced child's stop.
const cldTrapped = 4

// ignoringEINTR calls fn until it fails with something other than EINTR.
func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// exitWatch tells when a child has exited without holding a thread: its
// pidfd, non-blocking and in the runtime's network poller, becomes
// readable when the process exits.
type exitWatch struct {
	f *os.File
}

// watchExit starts watching the child pid, which must not have been
// reaped (so that pid is still that child). It fails on kernels without
// pidfds (before Linux 5.3).
func watchExit(pid int) (*exitWatch, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return &exitWatch{f: os.NewFile(uintptr(fd), "pidfd")}, nil
}

// wait parks the calling goroutine until the process has exited, and
// leaves it unreaped: while it is a zombie its pid, and so its process
// group and session ids, cannot be reused, which makes it safe to kill
// what it left behind. It reports whether it could wait so.
func (w *exitWatch) wait() bool {
	defer w.f.Close()
	rc, err := w.f.SyscallConn()
	if err != nil {
		return false
	}
	var exited bool
	err = rc.Read(func(fd uintptr) bool {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if errors.Is(err, unix.EINTR) {
			return false
		}
		// With WNOHANG, a process still running leaves info zero.
		exited = err == nil && info.Signo == int32(unix.SIGCHLD)
		return err != nil || exited
	})
	return err == nil && exited
}
