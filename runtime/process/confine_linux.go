package process

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/leftover"
)

// confiner puts a runtime's instances where they can be limited and
// killed whole: each in a cgroup v2 of its own when the machine allows,
// else in its session and process group, with the agent as their child
// subreaper (orphans_linux.go) and rlimits for what a cgroup would limit.
type confiner struct {
	tree     *cgroupTree    // nil: the fallback
	sweeping bool           // joined the sweeper
	book     *leftover.Book // records the tree, or each instance's session
	seq      atomic.Uint64
}

// newConfiner sets up confinement as mode says, and announces on log what
// it could set up and what it falls back to.
func newConfiner(mode CgroupMode, parent string, book *leftover.Book, log *slog.Logger) (*confiner, error) {
	c := &confiner{book: book}
	why := errors.New("cgroups: none in the configuration")
	if mode != CgroupsNone {
		c.tree, why = openCgroupTree(parent)
		if why != nil && mode == CgroupsRequired {
			return nil, fmt.Errorf("%w: cgroups are required but cannot be used: %w", spear.ErrConfig, why)
		}
	}
	// Without cgroups, orphans of instances must come to the agent. As
	// init, or once a subreaper (the mark is for the process's life),
	// they come anyway, and must be reaped.
	subreaper := c.tree == nil
	if subreaper || os.Getpid() == 1 || isSubreaper() {
		if err := joinSweeper(c.tree, subreaper); err != nil {
			if c.tree != nil {
				_ = c.tree.remove()
			}
			return nil, err
		}
		c.sweeping = true
	}
	if c.tree != nil {
		if err := book.Add(leftoverKind, filepath.Base(c.tree.path), leftoverRecord{Cgroup: c.tree.path}); err != nil {
			_ = c.close()
			return nil, err
		}
	}
	c.announce(log, why)
	return c, nil
}

// Where limits go without their cgroup controller.
const (
	fallbackMemory = "RLIMIT_DATA of each process"
	fallbackPIDs   = "RLIMIT_NPROC of the instance's user (no limit for root)"
	fallbackCPU    = "not enforced"
)

// announce says how instances are confined, and where limits fall back.
func (c *confiner) announce(log *slog.Logger, why error) {
	if c.tree == nil {
		log.Warn("instances run without cgroups: the agent kills them by process group and session, as their child subreaper; limits fall back",
			"reason", why.Error(), "memory", fallbackMemory, "pids", fallbackPIDs, "cpu", fallbackCPU)
		return
	}
	attrs := []any{"cgroup", c.tree.path}
	if c.tree.note != "" {
		attrs = append(attrs, "note", c.tree.note)
	}
	var missing []string
	for _, ctl := range limitControllers {
		if !c.tree.ctrl[ctl] {
			missing = append(missing, ctl)
		}
	}
	if len(missing) == 0 {
		log.Info("instances run in cgroups, with memory, cpu and pids limits", attrs...)
		return
	}
	fallback := map[string]string{"memory": fallbackMemory, "pids": fallbackPIDs, "cpu": fallbackCPU}
	for _, ctl := range missing {
		attrs = append(attrs, ctl, fallback[ctl])
	}
	log.Warn("instances run in cgroups, but the "+strings.Join(missing, ", ")+" controllers are not available to the agent; those limits fall back", attrs...)
}

// isSubreaper reports whether this process is a child subreaper.
func isSubreaper() bool {
	var v int32
	err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&v)), 0, 0, 0)
	return err == nil && v != 0
}

// close ends the runtime's confinement once its instances are gone.
func (c *confiner) close() error {
	if c.sweeping {
		leaveSweeper(c.tree)
	}
	if c.tree != nil {
		if err := c.tree.remove(); err != nil {
			return err
		}
		c.book.Remove(leftoverKind, filepath.Base(c.tree.path))
	}
	return nil
}

// describe says how instances are confined, for the start log.
func (c *confiner) describe() string {
	if c.tree == nil {
		return "session"
	}
	return "cgroup"
}

// confinement is one instance's.
type confinement struct {
	book    *leftover.Book  // records its session, without a cgroup
	cg      *cgroup         // nil: the fallback
	rlimits []rlimit        // the limits its cgroup cannot hold
	pid     int             // the instance's process, once started
	swept   <-chan struct{} // closed once its ended session has no process left
}

// confine prepares the confinement of an instance named name with limits
// lim.
func (c *confiner) confine(name string, lim Limits) (*confinement, error) {
	cf := &confinement{book: c.book}
	rest := lim
	if c.tree != nil {
		cg, r, err := c.tree.create(fmt.Sprintf("%d-%s", c.seq.Add(1), name), lim)
		if err != nil {
			return nil, fmt.Errorf("%w: cgroup: %w", spear.ErrInvalidConfig, err)
		}
		cf.cg, rest = cg, r
	}
	if rest.Memory > 0 {
		cf.rlimits = append(cf.rlimits, rlimit{resource: unix.RLIMIT_DATA, value: uint64(rest.Memory)})
	}
	if rest.PIDs > 0 {
		cf.rlimits = append(cf.rlimits, rlimit{resource: unix.RLIMIT_NPROC, value: uint64(rest.PIDs)})
	}
	return cf, nil
}

// prepare has cmd start in the instance's cgroup.
func (cf *confinement) prepare(cmd *exec.Cmd) {
	if cf.cg != nil {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = cf.cg.fd
	}
}

// started records the instance's process, which runs as uid; it may now
// be killed. Without a cgroup, its session is recorded for the next agent,
// should this one die.
func (cf *confinement) started(pid, uid int) error {
	cf.pid = pid
	if cf.cg != nil {
		cf.cg.closeFD()
		return nil
	}
	r, err := sessionRecord(pid, uid)
	if err == nil {
		err = cf.book.Add(leftoverKind, sessionKey(pid), r)
	}
	return err
}

// sessionKey names the record of session sid.
func sessionKey(sid int) string { return "session-" + strconv.Itoa(sid) }

// notStarted undoes confine for a process that never started.
func (cf *confinement) notStarted() {
	if cf.cg != nil {
		_ = cf.cg.remove()
	}
}

// kill SIGKILLs all the instance's processes.
func (cf *confinement) kill() error {
	if cf.cg != nil {
		return cf.cg.kill()
	}
	if err := syscall.Kill(-cf.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// leaderExited kills what the instance's process, which has exited but
// is not yet reaped, left behind: its cgroup, or its process group (its
// zombie pins the group id) and then, through the sweeper, its session.
func (cf *confinement) leaderExited() {
	if cf.cg != nil {
		_ = cf.cg.kill()
	}
	_ = syscall.Kill(-cf.pid, syscall.SIGKILL)
	cf.swept = leaderExited(cf.pid)
}

// sweptTimeout bounds the wait for an ended instance's session to have no
// process left.
const sweptTimeout = 5 * time.Second

// reaped ends the confinement once the instance's process has been
// reaped, when its processes are all gone, and reports whether the kernel
// killed the instance for its memory limit.
func (cf *confinement) reaped() (oom bool, err error) {
	leaderReaped(cf.pid)
	if cf.swept != nil {
		select {
		case <-cf.swept:
		case <-time.After(sweptTimeout):
			err = fmt.Errorf("processes of session %d still alive after %s", cf.pid, sweptTimeout)
		}
	}
	if cf.cg == nil {
		if err == nil {
			cf.book.Remove(leftoverKind, sessionKey(cf.pid))
		}
		return false, err
	}
	oom = cf.cg.oomKilled()
	return oom, errors.Join(err, cf.cg.remove())
}

// memoryLimit is the memory limit its cgroup enforces (0: none).
func (cf *confinement) memoryLimit() uint64 {
	if cf.cg == nil {
		return 0
	}
	return uint64(cf.cg.memory)
}
