package process

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr makes the child the leader of a new session, and so of a
// new process group: signals to the group reach everything it starts, and
// the session is what the peer check admits (peer.go). The kernel SIGKILLs
// the child when its parent goes away.
//
// Pdeathsig fires when the OS thread that forked the child exits, not when
// the agent process does. The Go runtime ends a thread when a goroutine
// locked to it exits still locked, so an unrelated goroutine could
// otherwise take the forking thread down and kill a healthy child. The
// reaper therefore forks from a thread it keeps locked until the child is
// reaped (see Instance.run): nobody else runs on that thread, and it is
// blocked in wait for the child's life anyway.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
}

// peekExit waits until the process pid has exited, without reaping it,
// and reports whether it could. While the process is an unreaped zombie
// its pid, and so its process group id, cannot be reused, which makes it
// safe to signal the group after the leader has exited.
func peekExit(pid int) bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return err == nil
		}
	}
}
