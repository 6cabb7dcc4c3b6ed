package process

import (
	"errors"
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

// forkRequest asks the forking goroutine to start cmd.
type forkRequest struct {
	cmd  *exec.Cmd
	done chan<- error
}

// startChild starts cmd from the forking thread. Unless it fails, the
// caller must call childReaped once the process has been waited for.
func startChild(cmd *exec.Cmd) error {
	forker.mu.Lock()
	if forker.reqs == nil {
		forker.reqs = make(chan forkRequest)
		go forkLoop(forker.reqs)
	}
	forker.live++
	reqs := forker.reqs
	forker.mu.Unlock()
	done := make(chan error, 1)
	reqs <- forkRequest{cmd: cmd, done: done}
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
		r.done <- r.cmd.Start()
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
