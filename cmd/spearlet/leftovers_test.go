package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An agent killed with SIGKILL leaves behind what its instances started
// and its sockets; the next agent on the same state directory kills and
// removes them before it starts anything, then serves as usual. With
// cgroups (where this machine allows them) and without.
func TestRestartCleansUpAfterSIGKILL(t *testing.T) {
	for _, mode := range []string{"auto", "none"} {
		t.Run("cgroups "+mode, func(t *testing.T) {
			socketDir, stateDir := t.TempDir(), filepath.Join(t.TempDir(), "state")
			// The instance's command, a shell, starts a grandchild that
			// would outlive it, then becomes the worker.
			cfg := writeConfig(t, fmt.Sprintf(`
process: {cgroups: %s}
functions:
  - name: forker
    runtime: process
    command: /bin/sh
    args: ["-c", "sleep 600 & echo grandchild $!; exec \"$0\" worker", %q]
    min_instances: 1
`, mode, binary))
			d := startDaemonIn(t, socketDir, stateDir, nil, "--config", cfg)
			if out, err := d.cli(t, "", "invoke", "forker", "hi"); err != nil || !strings.HasSuffix(out, "|hi") {
				t.Fatalf("invoke: %q, %v", out, err)
			}
			grandchild := waitLogPID(t, d, regexp.MustCompile(`msg="grandchild (\d+)"`))
			sockets := spearDirs(t, socketDir)
			if len(sockets) != 1 {
				t.Fatalf("socket directories %v, want the agent's one", sockets)
			}

			// SIGKILL: nothing of the agent runs to clean up.
			if err := d.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			d.wait(t)
			time.Sleep(100 * time.Millisecond) // the worker's parent-death signal
			if !alive(grandchild) {
				t.Fatalf("the grandchild %d died with the agent; the test needs it to outlive it", grandchild)
			}
			if _, err := os.Stat(sockets[0]); err != nil {
				t.Fatalf("the dead agent's socket directory is gone already: %v", err)
			}

			// The next agent finds and removes all of it, then serves.
			d2 := startDaemonIn(t, socketDir, stateDir, nil, "--config", cfg)
			waitGone(t, grandchild)
			if _, err := os.Stat(sockets[0]); !os.IsNotExist(err) {
				t.Errorf("the dead agent's socket directory %s is still there (%v)", sockets[0], err)
			}
			if out, err := d2.cli(t, "", "invoke", "forker", "again"); err != nil || !strings.HasSuffix(out, "|again") {
				t.Fatalf("invoke after the restart: %q, %v", out, err)
			}
			if !strings.Contains(d2.logText(), "removed what an earlier run left") {
				t.Errorf("the restarted agent does not say what it cleaned up:\n%s", d2.logText())
			}
		})
	}
}

// waitLogPID waits for a log line matching re and returns its pid.
func waitLogPID(t *testing.T, d *daemon, re *regexp.Regexp) int {
	t.Helper()
	var pid int
	eventually(t, "the line "+re.String(), func() bool {
		if m := re.FindStringSubmatch(d.logText()); m != nil {
			pid, _ = strconv.Atoi(m[1])
			return true
		}
		return false
	})
	return pid
}

// spearDirs lists the agent's socket directories in dir.
func spearDirs(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "spear-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// alive reports whether process pid runs (a zombie does not).
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z" && syscall.Kill(pid, 0) == nil
}

// waitGone waits until process pid no longer runs.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	eventually(t, fmt.Sprintf("process %d to die", pid), func() bool { return !alive(pid) })
}
