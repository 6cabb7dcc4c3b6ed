//go:build unix && !linux

package process

import (
	"errors"
	"os/exec"
	"syscall"
)

// sysProcAttr makes the child the leader of a new session, and so of a
// new process group. There is no parent-death signal here: a child
// outlives an agent that is killed.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}

// rlimit is Linux only (confine_other.go sets none).
type rlimit struct{}

// childLimits are Linux only.
type childLimits struct {
	rlimits  []rlimit
	uid, gid int
}

// startChild starts cmd.
func startChild(cmd *exec.Cmd, _ childLimits) error { return cmd.Start() }

// childReaped does nothing here.
func childReaped() {}

// exitWatch is Linux only.
type exitWatch struct{}

// watchExit fails here: without pidfds the reaper waits in Wait, and
// leaves what the leader left in its group alone, since the group id
// could already name another group once the leader is reaped.
func watchExit(int) (*exitWatch, error) { return nil, errors.ErrUnsupported }

func (*exitWatch) wait() bool { return false }
