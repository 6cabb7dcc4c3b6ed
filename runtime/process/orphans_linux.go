package process

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// orphans is the agent's duty as child subreaper, shared by the process
// runtimes of the process. Where there are no cgroups, the agent marks
// itself a child subreaper: a process an instance started that outlives
// its parent becomes the agent's child instead of init's. The sweeper then
// finds, among the agent's children, the processes of instances (by
// session, or by cgroup), kills those whose instance has ended, and reaps
// the dead, so that neither survivors nor zombies pile up. The instances'
// leaders are left to their own reapers.
var orphans orphanage

// orphanage is the type of orphans.
type orphanage struct {
	mu      sync.Mutex
	users   int                   // runtimes that need the sweeper
	leaders map[int]bool          // instance processes not yet reaped
	dead    map[int]chan struct{} // sessions whose leader exited and may still have processes; each closed once it has none
	trees   map[*cgroupTree]bool  // the runtimes' cgroup subtrees
	wake    chan struct{}         // nil when no sweeper runs
	stop    chan struct{}
	stopped chan struct{}
}

// init makes the maps; o.mu is held.
func (o *orphanage) init() {
	if o.leaders == nil {
		o.leaders, o.dead, o.trees = map[int]bool{}, map[int]chan struct{}{}, map[*cgroupTree]bool{}
	}
}

// joinSweeper makes the sweeper run for one more runtime, and this
// process a child subreaper when subreaper is set; tree, when not nil,
// holds the runtime's instances.
func joinSweeper(tree *cgroupTree, subreaper bool) error {
	if subreaper {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("become a child subreaper: %w", err)
		}
	}
	o := &orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	o.init()
	if tree != nil {
		o.trees[tree] = true
	}
	o.users++
	if o.stop == nil { // none runs, nor is one stopping
		o.wake, o.stop, o.stopped = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go sweeper(o.wake, o.stop, o.stopped)
	}
	return nil
}

// leaveSweeper undoes joinSweeper; the last runtime to leave stops the
// sweeper, once the sessions of ended instances have no process left (or
// after lastSweeps).
func leaveSweeper(tree *cgroupTree) {
	o := &orphans
	o.mu.Lock()
	o.users--
	last := o.users == 0
	o.mu.Unlock()
	if last {
		for deadline := time.Now().Add(lastSweeps); sweep() && time.Now().Before(deadline); {
			time.Sleep(sweepRetry)
		}
	}
	o.mu.Lock()
	delete(o.trees, tree)
	var stop, stopped chan struct{}
	if o.users == 0 && o.stop != nil {
		stop, stopped = o.stop, o.stopped
		o.wake, o.stop, o.stopped = nil, nil, nil
		for s, swept := range o.dead {
			close(swept)
			delete(o.dead, s)
		}
	}
	o.mu.Unlock()
	if stop != nil {
		close(stop)
		<-stopped
	}
}

// lastSweeps bounds how long the last runtime to leave sweeps the
// sessions of ended instances.
const lastSweeps = 5 * time.Second

// leaderStarted records an instance's process, whose own reaper waits for
// it; the forking goroutine calls it before it lets go of forking.
func leaderStarted(pid int) {
	o := &orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	o.init()
	o.leaders[pid] = true
}

// leaderExited records that an instance's process exited: what is left
// of its session is killed, when a sweeper runs. The channel it returns
// closes once the session has no process left among this process's
// children (at once without a sweeper).
func leaderExited(pid int) <-chan struct{} {
	o := &orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	swept := make(chan struct{})
	if o.wake == nil {
		close(swept)
		return swept
	}
	if old, ok := o.dead[pid]; ok {
		return old
	}
	o.dead[pid] = swept
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return swept
}

// leaderReaped records that an instance's process has been reaped.
func leaderReaped(pid int) {
	o := &orphans
	o.mu.Lock()
	delete(o.leaders, pid)
	o.mu.Unlock()
}

// sweepRetry is how soon the sweeper looks again while ended sessions
// still have processes.
const sweepRetry = 20 * time.Millisecond

// sweeper sweeps on every SIGCHLD and wake-up until stop closes.
func sweeper(wake, stop, stopped chan struct{}) {
	defer close(stopped)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	var retry <-chan time.Time
	for {
		select {
		case <-stop:
			return
		case <-sigs:
		case <-wake:
		case <-retry:
		}
		retry = nil
		if sweep() {
			retry = time.After(sweepRetry)
		}
	}
}

// sweep kills the processes of ended instances among this process's
// children, and reaps the dead of every instance. It reports whether
// ended sessions still have processes.
func sweep() (again bool) {
	o := &orphans
	forking.Lock() // every child listed is known, if it is an instance's
	children := childPIDs()
	o.mu.Lock()
	leaders := make(map[int]bool, len(o.leaders))
	for p := range o.leaders {
		leaders[p] = true
	}
	dead := make(map[int]bool, len(o.dead))
	for s := range o.dead {
		dead[s] = true
	}
	var trees []*cgroupTree
	for t := range o.trees {
		trees = append(trees, t)
	}
	o.mu.Unlock()
	forking.Unlock()

	members := map[int]bool{} // ended sessions that still have processes
	for _, pid := range children {
		if leaders[pid] {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		inTree := false
		if len(trees) > 0 {
			if cg, err := procCgroup(pid); err == nil {
				for _, t := range trees {
					inTree = inTree || t.contains(cg)
				}
			}
		}
		ended := dead[st.session]
		if !ended && !leaders[st.session] && !inTree {
			continue // not an instance's: leave it to whoever started it
		}
		if ended {
			members[st.session] = true
		}
		switch {
		case st.state == 'Z':
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		case ended:
			// pid is this process's unreaped child: it cannot be reused.
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	for s := range dead {
		if swept, ok := o.dead[s]; ok && !members[s] {
			close(swept)
			delete(o.dead, s)
		}
	}
	return len(o.dead) > 0
}

// childPIDs lists this process's children (of all its threads).
func childPIDs() []int {
	files, _ := filepath.Glob("/proc/self/task/*/children")
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(s); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// procStat is what the agent reads of /proc/<pid>/stat.
type procStat struct {
	state   byte
	session int
	start   uint64 // clock ticks after boot
}

// readStat reads /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime stime cutime cstime priority nice threads
	// itrealvalue starttime ..."; comm may hold spaces and parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, errors.New("unexpected /proc stat format")
	}
	sid, err1 := strconv.Atoi(f[3])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return procStat{}, err
	}
	return procStat{state: f[0][0], session: sid, start: start}, nil
}

// procCgroup returns the directory of process pid's cgroup v2.
func procCgroup(pid int) (string, error) {
	rel, err := readCgroupLine(strconv.Itoa(pid))
	if err != nil {
		return "", err
	}
	return cgroupDir(rel)
}
