//go:build unix && !linux

package process

import "syscall"

// sysProcAttr makes the child the leader of a new session, and so of a
// new process group. There is no parent-death signal here: a child
// outlives an agent that is killed.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}

// peekExit cannot wait without reaping here; the reaper then reaps first
// and leaves what the leader left in its group alone, since the group id
// could already name another group.
func peekExit(int) bool { return false }
