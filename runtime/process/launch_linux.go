package process

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"strconv"
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

// forkRequest asks the forking goroutine to start cmd with limits.
type forkRequest struct {
	cmd    *exec.Cmd
	limits childLimits
	done   chan<- error
}

// childLimits are the rlimits to set on a child that runs as user uid and
// group gid.
type childLimits struct {
	rlimits  []rlimit
	uid, gid int
}

// rlimit is a resource limit (soft and hard) to set on a child.
type rlimit struct {
	resource int
	value    uint64
}

// startChild starts cmd from the forking thread, with its limits set
// before its program runs. Unless it fails, the caller must call
// childReaped once the process has been waited for.
func startChild(cmd *exec.Cmd, limits childLimits) error {
	keepInheritedFromChildren()
	forker.mu.Lock()
	if forker.reqs == nil {
		forker.reqs = make(chan forkRequest)
		go forkLoop(forker.reqs)
	}
	forker.live++
	reqs := forker.reqs
	forker.mu.Unlock()
	done := make(chan error, 1)
	reqs <- forkRequest{cmd: cmd, limits: limits, done: done}
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

// forking is held from a fork until its child is known as an instance's
// process (leaderStarted), so that the sweeper, which lists children
// under it, never takes a new instance's process for an orphan.
var forking sync.Mutex

// forkLoop is the forking goroutine. It never unlocks its thread, so the
// thread ends when it returns.
func forkLoop(reqs <-chan forkRequest) {
	goruntime.LockOSThread()
	for r := range reqs {
		forking.Lock()
		err := startLimited(r.cmd, r.limits)
		if err == nil {
			leaderStarted(r.cmd.Process.Pid)
		}
		forking.Unlock()
		r.done <- err
	}
}

// startLimited starts cmd with rlimits set before its program runs. Go
// cannot set them between fork and exec, and setting them once the child
// runs would leave it a moment unbounded, so the child starts traced
// (PTRACE_TRACEME): it stops right after exec, the forking thread, its
// tracer, sets its limits (prlimit) and lets it go (PTRACE_DETACH).
func startLimited(cmd *exec.Cmd, limits childLimits) error {
	if len(limits.rlimits) == 0 {
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
	if err := prlimitAs(pid, limits); err != nil {
		return abandon(err)
	}
	if err := unix.PtraceDetach(pid); err != nil {
		return abandon(fmt.Errorf("release the traced process: %w", err))
	}
	return nil
}

// prlimitAs sets limits.rlimits on pid, a process of limits.uid and
// limits.gid. Setting the limits of another user's process needs
// CAP_SYS_RESOURCE, which root in a container often lacks; the kernel
// also allows it to a caller whose real user and group ids are the
// target's. So for another user the forking thread, and it alone, takes
// the instance's ids as its real ones, keeping root as its effective user
// (raw system calls change one thread's credentials, where Go's
// syscall.Setresuid changes every thread's), and takes its own back.
// Only the forking thread may do this: nothing else runs on it.
func prlimitAs(pid int, limits childLimits) error {
	uid, gid := unix.Getuid(), unix.Getgid()
	if limits.uid != uid || limits.gid != gid {
		if err := setThreadRealIDs(limits.uid, limits.gid); err != nil {
			return fmt.Errorf("take the instance's ids to set its limits: %w", err)
		}
		defer func() {
			if err := setThreadRealIDs(uid, gid); err != nil {
				// The thread would fork as another user from now on.
				panic("process: the forking thread cannot take its own ids back: " + err.Error())
			}
		}()
	}
	for _, l := range limits.rlimits {
		if err := unix.Prlimit(pid, l.resource, &unix.Rlimit{Cur: l.value, Max: l.value}, nil); err != nil {
			return fmt.Errorf("set resource limit %d: %w", l.resource, err)
		}
	}
	return nil
}

// setThreadRealIDs sets the calling thread's real group and user ids,
// leaving the effective and saved ones.
func setThreadRealIDs(uid, gid int) error {
	const keep = ^uintptr(0) // -1: unchanged
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), keep, keep); errno != 0 {
		return errno
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), keep, keep); errno != 0 {
		return errno
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

// keepInheritedFromChildren marks every descriptor from 3 up
// close-on-exec; startChild calls it before each fork. The Go runtime opens
// its own descriptors so, but what the agent inherited from its parent, or
// what code in it opened without the flag, would otherwise reach every
// instance: a channel between instances that nothing accounts for. A
// child still gets cmd.ExtraFiles (the secret's pipe): the fork duplicates
// them into place, which clears the flag on the copy.
func keepInheritedFromChildren() {
	if unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	// Before Linux 5.11: one descriptor at a time.
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
}
