package process_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
)

// Test users: numbers with no entry in the user database, far from any
// real user's, and of this test process alone: tests that run at once
// (another checkout's, on a shared machine) must not count each other's
// processes against a user's RLIMIT_NPROC (TestPIDsLimit). The ranges the
// tests take lie within testRange0 to testRange0+98.
var (
	testUID    = 4_000_000 + os.Getpid()%1_000_000*100
	testRange0 = testUID + 1
)

// needRoot skips a test that runs instances as other users.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running instances as another user needs root")
	}
}

// publicCopy copies the executable at path into a directory every user
// may enter, and returns the copy: go test builds in a private one.
func publicCopy(t *testing.T, path string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "spear-public-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, filepath.Base(path))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// asUser is childSpec run from a public copy of the test binary as user.
func asUser(t *testing.T, mode, user string) child {
	c := childSpec(mode)
	c.Command = publicCopy(t, os.Args[0])
	c.User = user
	return c
}

// procUID returns the real user id of process pid.
func procUID(t *testing.T, pid int) int { return procID(t, pid, "Uid:") }

// procGID returns the real group id of process pid.
func procGID(t *testing.T, pid int) int { return procID(t, pid, "Gid:") }

// procID returns the first id of the /proc status line of pid that
// begins with key ("Uid:", "Gid:").
func procID(t *testing.T, pid int, key string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			id, _ := strconv.Atoi(strings.Fields(v)[0])
			return id
		}
	}
	t.Fatalf("no %s in /proc status", key)
	return -1
}

// An instance runs as the user its function names, and its socket belongs
// to that user.
func TestRunAsUser(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	inst := e.start(t, asUser(t, "echo", fmt.Sprintf("%d:%d", testUID, testUID)))
	echo(t, inst, "as another user")
	if uid := procUID(t, inst.Info().PID); uid != testUID {
		t.Errorf("instance runs as uid %d, want %d", uid, testUID)
	}
	sock := inst.Channel().Credentials().Address
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != testUID || int(st.Gid) != testUID || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: uid %d gid %d mode %v, want %d %d 0600", sock, st.Uid, st.Gid, fi.Mode().Perm(), testUID, testUID)
	}
	if di, err := os.Stat(filepath.Dir(sock)); err != nil || di.Mode().Perm() != 0o711 {
		t.Errorf("socket directory mode %v (%v), want 0711: searchable, not listable", di.Mode().Perm(), err)
	}
	// (Its /proc/self/environ now belongs to root: it made itself
	// non-dumpable.)
	if home, _ := invoke(t, inst, "getenv", "HOME"); home != "/" {
		t.Errorf("HOME = %q for a user with no home, want /", home)
	}
}

// A user that is the agent's own with another group runs in that group:
// the group is not dropped because the user matches.
func TestRunAsOwnUserOtherGroup(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	inst := e.start(t, asUser(t, "echo", fmt.Sprintf("%d:%d", os.Geteuid(), testUID)))
	echo(t, inst, "in another group")
	pid := inst.Info().PID
	if uid, gid := procUID(t, pid), procGID(t, pid); uid != os.Geteuid() || gid != testUID {
		t.Errorf("instance runs as %d:%d, want %d:%d", uid, gid, os.Geteuid(), testUID)
	}
}

// Instances of a function with user @range each get a user id of their
// own, and give it back when they stop.
func TestUserRange(t *testing.T) {
	needRoot(t)
	e := newEnvWith(t, process.Options{UserRange: process.UIDRange{First: testRange0, Last: testRange0 + 1}})
	c := asUser(t, "echo", process.UserRange)
	a, b := e.start(t, c), e.start(t, c)
	ua, ub := procUID(t, a.Info().PID), procUID(t, b.Info().PID)
	if ua == ub || ua < testRange0 || ua > testRange0+1 || ub < testRange0 || ub > testRange0+1 {
		t.Fatalf("instances run as %d and %d, want the two ids of the range %d-%d", ua, ub, testRange0, testRange0+1)
	}
	if _, err := c.start(testCtx(t), e.rt, newID()); !errors.Is(err, spear.ErrConfig) {
		t.Fatalf("a third instance with a range of two: %v, want an error matching spear.ErrConfig", err)
	}
	if err := e.rt.Stop(testCtx(t), a); err != nil {
		t.Fatal(err)
	}
	third := e.start(t, c)
	if uid := procUID(t, third.Info().PID); uid != ua {
		t.Errorf("the next instance runs as %d, want the freed %d", uid, ua)
	}
}

// The pids limit bounds an instance's processes and threads together:
// pids.max, or without cgroup pids limits RLIMIT_NPROC, for an instance
// that runs as a user of its own. The instance keeps threads to spare
// (tiny's reserveThreads), as a Go program that meets its limit must: one
// that needs a new thread there aborts.
func TestPIDsLimit(t *testing.T) {
	needRoot(t)
	tiny := publicCopy(t, buildTiny(t))
	const limit, spawn = 24, 64
	for _, mode := range confinementModes(t) {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnvWith(t, process.Options{Cgroups: mode, UserRange: process.UIDRange{First: testRange0 + 10, Last: testRange0 + 19}})
			// A bounded GOMAXPROCS bounds the instance's own threads, on
			// machines with many CPUs too.
			inst := e.start(t, child{Spec: process.Spec{Command: tiny, User: process.UserRange, Env: runtime.Env{"GOMAXPROCS": "2"},
				Limits: process.Limits{PIDs: limit}}})
			out, err := invoke(t, inst, "spawn", strconv.Itoa(spawn))
			if err != nil {
				t.Fatal(err)
			}
			var started, threads int
			if _, err := fmt.Sscanf(out, "started %d threads %d", &started, &threads); err != nil ||
				started == 0 || threads <= 0 || started+threads > limit || !strings.Contains(out, "resource temporarily unavailable") {
				t.Errorf("spawning %d processes under a limit of %d: %q, want a refusal (EAGAIN) once processes and threads reach the limit", spawn, limit, out)
			}
			t.Logf("%s: %s", inst.Info().ID, out)
		})
	}
}
