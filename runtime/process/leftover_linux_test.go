package process

import (
	"bufio"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cleanWith runs the leftover cleaner on r.
func cleanWith(t *testing.T, r leftoverRecord) error {
	t.Helper()
	return cleanLeftover(r, slog.New(slog.DiscardHandler))
}

// running reports whether pid runs (a zombie does not).
func running(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z'
}

// waitNotRunning waits until pid no longer runs.
func waitNotRunning(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); running(pid); {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reapIfMine reaps pid if it became this process's child (when the test
// process is a subreaper).
func reapIfMine(pid int) {
	var ws syscall.WaitStatus
	_, _ = syscall.Wait4(pid, &ws, 0, nil)
}

// What an instance left in its session after its agent died is killed;
// what only looks like it is not.
func TestCleanSessionLeftover(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 300 & echo $!; exec sleep 300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	leader := cmd.Process.Pid
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	grandchild, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(grandchild, syscall.SIGKILL)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		reapIfMine(grandchild)
	})
	rec, err := sessionRecord(leader, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}

	for name, r := range map[string]leftoverRecord{
		"another user's":         {Session: rec.Session, Start: rec.Start, UID: rec.UID + 1, Boot: rec.Boot},
		"a reused pid's session": {Session: rec.Session, Start: rec.Start - 1, UID: rec.UID, Boot: rec.Boot},
		"another boot's":         {Session: rec.Session, Start: rec.Start, UID: rec.UID, Boot: "another boot"},
	} {
		if err := cleanWith(t, r); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !running(leader) || !running(grandchild) {
			t.Fatalf("cleaning up %s record killed a process it does not describe", name)
		}
	}

	// The agent dies: the instance's process with it (its parent-death
	// signal), its grandchild lives on in the session.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !running(grandchild) {
		t.Fatal("the grandchild died with its parent; the test needs it alive")
	}
	if err := cleanWith(t, rec); err != nil {
		t.Fatal(err)
	}
	waitNotRunning(t, grandchild)
}

// A dead agent's cgroup subtree is killed and removed whole.
func TestCleanCgroupLeftover(t *testing.T) {
	tree, err := openCgroupTree("")
	if err != nil {
		t.Skip("cgroups cannot be used here:", err)
	}
	cg, _, err := tree.create("1-leftover", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg.fd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cg.closeFD()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = killCgroupTree(tree.path) })

	if err := cleanWith(t, leftoverRecord{Cgroup: "/sys/fs/cgroup/not-ours"}); err == nil {
		t.Error("a record of a cgroup not named spear-* was cleaned")
	}
	if err := cleanWith(t, leftoverRecord{Cgroup: tree.path}); err != nil {
		t.Fatal(err)
	}
	waitNotRunning(t, cmd.Process.Pid)
	if _, err := os.Stat(tree.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the subtree %s is still there (%v)", tree.path, err)
	}
}
