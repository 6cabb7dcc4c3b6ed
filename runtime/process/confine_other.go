//go:build unix && !linux

package process

import (
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"syscall"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/leftover"
)

// confiner has only process groups here: no cgroups, no subreaper, no
// limits.
type confiner struct{}

func newConfiner(mode CgroupMode, _ string, _ *leftover.Book, log *slog.Logger) (*confiner, error) {
	if err := mode.Validate(); err != nil {
		return nil, err
	}
	if mode == CgroupsRequired {
		return nil, fmt.Errorf("%w: cgroups are Linux only", spear.ErrConfig)
	}
	log.Warn("instances are killed by process group only: cgroups, the child subreaper and resource limits are Linux only")
	return &confiner{}, nil
}

func (*confiner) close() error     { return nil }
func (*confiner) describe() string { return "process group" }

// confinement is an instance's process group.
type confinement struct {
	rlimits []rlimit // always empty
	pid     int
}

func (*confiner) confine(_ string, lim Limits) (*confinement, error) {
	if !lim.IsZero() {
		return nil, fmt.Errorf("%w: resource limits are Linux only", spear.ErrInvalidConfig)
	}
	return &confinement{}, nil
}

func (*confinement) prepare(*exec.Cmd)           {}
func (cf *confinement) started(pid, _ int) error { cf.pid = pid; return nil }
func (*confinement) notStarted()                 {}
func (*confinement) leaderExited()               {}
func (*confinement) reaped() (bool, error)       { return false, nil }
func (*confinement) memoryLimit() uint64         { return 0 }
func (cf *confinement) kill() error {
	if err := syscall.Kill(-cf.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
