package process

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spear-go/spear/runtime"
)

// The cgroup v2 controllers instances' limits use.
var limitControllers = []string{"cpu", "memory", "pids"}

// cgroupTree is a runtime's own cgroup v2 subtree, under the agent's
// cgroup (or a configured parent): one cgroup per instance below it, each
// created with the instance's limits and killed as a whole (cgroup.kill).
// The tree's cgroups belong to the agent; an instance running as another
// user cannot change its own limits.
type cgroupTree struct {
	path string          // the subtree's directory
	ctrl map[string]bool // limitControllers enabled in it
	note string          // what the agent had to do to delegate controllers, for the announcement
}

// openCgroupTree makes a fresh subtree under parent (the agent's own
// cgroup when empty) and enables in it what it can of limitControllers.
// It fails when there is no cgroup v2 hierarchy or the agent may not make
// cgroups in it; then the runtime does without.
func openCgroupTree(parent string) (*cgroupTree, error) {
	if parent == "" {
		var err error
		if parent, err = ownCgroup(); err != nil {
			return nil, err
		}
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	t := &cgroupTree{path: filepath.Join(parent, "spear-"+hex.EncodeToString(b)), ctrl: map[string]bool{}}
	if err := os.Mkdir(t.path, 0o755); err != nil {
		return nil, fmt.Errorf("cannot make a cgroup under %s: %w", parent, err)
	}
	// Controllers reach the subtree only through its parent's
	// subtree_control, which a cgroup holding processes (other than the
	// root) cannot set: the agent then moves itself into a leaf of its
	// own, as a service with a delegated cgroup is expected to.
	want := intersect(limitControllers, readFields(filepath.Join(parent, "cgroup.controllers")))
	if missing := without(want, readFields(filepath.Join(parent, "cgroup.subtree_control"))); len(missing) > 0 {
		err := enableControllers(parent, missing)
		if errors.Is(err, unix.EBUSY) {
			if leaf, merr := moveSelfToLeaf(parent); merr == nil {
				t.note = "moved the agent into " + leaf + " to delegate controllers"
				err = enableControllers(parent, missing)
			}
		}
		if err != nil {
			t.note = fmt.Sprintf("could not enable %s in %s: %v", strings.Join(missing, ", "), parent, err)
		}
	}
	have := intersect(limitControllers, readFields(filepath.Join(t.path, "cgroup.controllers")))
	if err := enableControllers(t.path, have); err == nil {
		for _, c := range have {
			t.ctrl[c] = true
		}
	}
	return t, nil
}

// ownCgroup returns the directory of this process's cgroup in the cgroup
// v2 hierarchy (the "0::" line of /proc/self/cgroup).
func ownCgroup() (string, error) {
	rel, err := readCgroupLine("self")
	if err != nil {
		return "", err
	}
	return cgroupDir(rel)
}

// readCgroupLine returns the path of process pid's cgroup v2 in the
// hierarchy ("self" for this process). A zombie keeps its cgroup until
// reaped.
func readCgroupLine(pid string) (string, error) {
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		if rel, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "0::"); ok {
			return rel, nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy (cgroup v1 only)")
}

// cgroupDir returns the directory of the cgroup at path rel of the cgroup
// v2 hierarchy, where this process sees it mounted.
func cgroupDir(rel string) (string, error) {
	mounts, err := cgroup2Mounts()
	if err != nil {
		return "", err
	}
	for _, m := range mounts {
		if sub, ok := strings.CutPrefix(rel, m.root); ok && (m.root == "/" || sub == "" || sub[0] == '/') {
			return filepath.Join(m.point, sub), nil
		}
	}
	return "", fmt.Errorf("cgroup %s is not under a cgroup v2 mount this process can see", rel)
}

// cgroup2Mount is a mount of the cgroup v2 hierarchy: its mount point and
// the hierarchy's path it shows there.
type cgroup2Mount struct{ point, root string }

// cgroup2Mounts lists the cgroup v2 mounts of /proc/self/mountinfo, read
// once.
var cgroup2Mounts = sync.OnceValues(func() ([]cgroup2Mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []cgroup2Mount
	for line := range strings.Lines(string(b)) {
		// "id parent maj:min root mountpoint options... - fstype source super"
		left, right, ok := strings.Cut(line, " - ")
		f, r := strings.Fields(left), strings.Fields(right)
		if ok && len(f) >= 5 && len(r) >= 1 && r[0] == "cgroup2" {
			out = append(out, cgroup2Mount{point: f[4], root: f[3]})
		}
	}
	if len(out) == 0 {
		return nil, errors.New("cgroup v2 is not mounted")
	}
	return out, nil
})

// enableControllers enables controllers for the children of the cgroup at
// dir.
func enableControllers(dir string, controllers []string) error {
	if len(controllers) == 0 {
		return nil
	}
	var b strings.Builder
	for _, c := range controllers {
		b.WriteString(" +" + c)
	}
	return writeCgroupFile(dir, "cgroup.subtree_control", strings.TrimSpace(b.String()))
}

// moveSelfToLeaf moves this process into a new leaf cgroup under dir, and
// returns the leaf.
func moveSelfToLeaf(dir string) (string, error) {
	leaf := filepath.Join(dir, "spearlet")
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	// "0" moves the writing process, all its threads.
	return leaf, writeCgroupFile(leaf, "cgroup.procs", "0")
}

// create makes the cgroup of one instance, with its limits, and opens it
// for CLONE_INTO_CGROUP. It returns the limits the tree could not apply.
func (t *cgroupTree) create(name string, lim Limits) (*cgroup, Limits, error) {
	dir := filepath.Join(t.path, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, lim, err
	}
	return t.createIn(dir, lim)
}

// createIn sets up the cgroup just made at dir; on failure it removes it.
func (t *cgroupTree) createIn(dir string, lim Limits) (*cgroup, Limits, error) {
	cg := &cgroup{path: dir, fd: -1}
	rest := lim
	var err error
	set := func(file, value string) {
		if err == nil {
			err = writeCgroupFile(dir, file, value)
		}
	}
	if lim.Memory > 0 && t.ctrl["memory"] {
		set("memory.max", strconv.FormatUint(uint64(lim.Memory), 10))
		set("memory.oom.group", "1") // an instance is killed whole
		if _, serr := os.Stat(filepath.Join(dir, "memory.swap.max")); serr == nil {
			set("memory.swap.max", "0") // memory.max is the cap, not swap on top
		}
		cg.memory, rest.Memory = lim.Memory, 0
	}
	if lim.CPU > 0 && t.ctrl["cpu"] {
		// Quota per period, both in µs: 1000m is a whole period.
		set("cpu.max", fmt.Sprintf("%d %d", int64(lim.CPU)*cpuPeriod/1000, cpuPeriod))
		rest.CPU = 0
	}
	if lim.PIDs > 0 && t.ctrl["pids"] {
		set("pids.max", strconv.Itoa(lim.PIDs))
		rest.PIDs = 0
	}
	if err == nil {
		cg.fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		_ = os.Remove(dir)
		return nil, lim, err
	}
	return cg, rest, nil
}

// cpuPeriod is cpu.max's period in µs (the kernel's default).
const cpuPeriod = 100000

// remove removes the tree, whose instances' cgroups are gone.
func (t *cgroupTree) remove() error { return removeCgroup(t.path) }

// contains reports whether the cgroup at path (in the hierarchy's file
// system) is in the tree.
func (t *cgroupTree) contains(path string) bool {
	return path == t.path || strings.HasPrefix(path, t.path+"/")
}

// cgroup is one instance's cgroup.
type cgroup struct {
	path   string
	fd     int           // the directory, open until the child is in it; -1 then
	memory runtime.Bytes // memory.max, for the stop reason; 0 when none
}

// closeFD closes the directory once the child has been cloned into it.
func (cg *cgroup) closeFD() {
	if cg.fd >= 0 {
		unix.Close(cg.fd)
		cg.fd = -1
	}
}

// kill SIGKILLs every process in the cgroup (cgroup.kill, Linux 5.14;
// before that, each process cgroup.procs lists, until none is left).
func (cg *cgroup) kill() error {
	err := writeCgroupFile(cg.path, "cgroup.kill", "1")
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for range 100 {
		pids := readFields(filepath.Join(cg.path, "cgroup.procs"))
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
		time.Sleep(time.Millisecond)
	}
	return errors.New("processes keep appearing in " + cg.path)
}

// oomKilled reports whether the kernel killed a process of the cgroup for
// going over memory.max.
func (cg *cgroup) oomKilled() bool {
	b, err := os.ReadFile(filepath.Join(cg.path, "memory.events"))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		if (k == "oom_kill" || k == "oom_group_kill") && v != "0" {
			return true
		}
	}
	return false
}

// remove removes the cgroup once its processes have died; the caller has
// killed them.
func (cg *cgroup) remove() error {
	cg.closeFD()
	return removeCgroup(cg.path)
}

// removeCgroup removes the cgroup at dir, waiting up to a few seconds for
// its killed processes to be gone (rmdir fails with EBUSY until then).
func removeCgroup(dir string) error {
	wait := time.Millisecond
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// killCgroupTree kills every process in the cgroup at dir and its
// descendants, and removes them all, deepest first: what a dead agent's
// tree is cleaned with.
func killCgroupTree(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := (&cgroup{path: dir, fd: -1}).kill(); err != nil {
		return err
	}
	var dirs []string
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	var errs []error
	for _, d := range slices.Backward(dirs) {
		errs = append(errs, removeCgroup(d))
	}
	return errors.Join(errs...)
}

// writeCgroupFile writes value to the cgroup interface file name in dir,
// which must exist: a kernel without it fails with an error matching
// os.ErrNotExist.
func writeCgroupFile(dir, name, value string) error {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(value)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return nil
}

// readFields returns the whitespace-separated words of the file at path,
// or none when it cannot be read.
func readFields(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Fields(string(bytes.TrimSpace(b)))
}

// intersect returns the elements of a that are in b, in a's order.
func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// without returns the elements of a that are not in b.
func without(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
