package process

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spear-go/spear/internal/leftover"
)

// leftoverKind is the kind of the runtime's records of what it started
// (internal/leftover): its cgroup subtree, or without cgroups each
// instance's session.
const leftoverKind = "process"

// leftoverRecord is one such record: Cgroup, or Session and what tells
// that session's processes from others.
type leftoverRecord struct {
	// Cgroup is the runtime's subtree.
	Cgroup string `json:"cgroup,omitempty"`
	// Session is an instance's session id (its process's pid), Start its
	// process's start time (clock ticks after boot), UID its user, and
	// Boot the boot it ran in.
	Session int    `json:"session,omitempty"`
	Start   uint64 `json:"start,omitempty"`
	UID     int    `json:"uid,omitempty"`
	Boot    string `json:"boot,omitempty"`
}

func init() { leftover.Register(leftoverKind, cleanLeftover) }

// cleanLeftover kills and removes what a dead agent's runtime left.
func cleanLeftover(r leftoverRecord, log *slog.Logger) error {
	if r.Cgroup != "" {
		if !strings.HasPrefix(filepath.Base(r.Cgroup), "spear-") {
			return fmt.Errorf("%s is not a runtime's cgroup subtree; left alone", r.Cgroup)
		}
		return killCgroupTree(r.Cgroup)
	}
	return killSession(r, log)
}

// bootID identifies this boot of the machine.
var bootID = sync.OnceValue(func() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
})

// sessionRecord is the record of an instance started without cgroups.
func sessionRecord(pid, uid int) (leftoverRecord, error) {
	st, err := readStat(pid)
	if err != nil {
		return leftoverRecord{}, err
	}
	return leftoverRecord{Session: pid, Start: st.start, UID: uid, Boot: bootID()}, nil
}

// killSession kills what is left of an instance's session after its agent
// died. The instance's process itself died with the agent (the
// parent-death signal), but its descendants live on in its session. They
// are told from others by their session, their user, and a start time no
// earlier than the instance's. While the session has a process, its id
// cannot be reused as a pid; if that pid names a process started at
// another time, the session ended and the id was reused: nothing is left
// to kill. (One case remains: the pid reused, by a process that made a
// session, started others in it and exited, all between the agent's death
// and its restart; docs/security.md.)
func killSession(r leftoverRecord, log *slog.Logger) error {
	if r.Boot != bootID() {
		return nil // a reboot killed everything
	}
	if st, err := readStat(r.Session); err == nil && st.start != r.Start {
		return nil
	}
	for range 50 {
		killed := 0
		stats, _ := filepath.Glob("/proc/[0-9]*/stat")
		for _, path := range stats {
			pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			if err != nil {
				continue
			}
			st, err := readStat(pid)
			if err != nil || st.session != r.Session || st.start < r.Start || st.state == 'Z' || procOwner(pid) != r.UID {
				continue
			}
			if err := unix.Kill(pid, unix.SIGKILL); err == nil {
				killed++
				log.Info("killed a process an earlier run's instance left", "pid", pid, "session", r.Session)
			}
		}
		if killed == 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond) // then look again, for what they forked meanwhile
	}
	return errors.New("processes keep appearing in session " + strconv.Itoa(r.Session))
}

// procOwner returns the real user id of process pid, or -1. (The owner
// of /proc/<pid> would not do: a non-dumpable process's is root.)
func procOwner(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				if uid, err := strconv.Atoi(f[0]); err == nil {
					return uid
				}
			}
		}
	}
	return -1
}
