package process_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/leftover"
	"github.com/spear-go/spear/internal/statedir"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
)

// confinementModes are the cgroup modes the confinement tests run in: the
// fallback always, and cgroups where this machine lets the agent use them.
func confinementModes(t *testing.T) []process.CgroupMode {
	t.Helper()
	modes := []process.CgroupMode{process.CgroupsNone}
	if err := cgroupsUsable(t); err != nil {
		t.Logf("cgroups cannot be used here, only the fallback is tested: %v", err)
		return modes
	}
	return append(modes, process.CgroupsRequired)
}

// cgroupsUsable reports why a runtime cannot use cgroups here, or nil.
func cgroupsUsable(t *testing.T) error {
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rt, err := process.New(process.Options{Factory: f, Cgroups: process.CgroupsRequired})
	if err != nil {
		return err
	}
	return rt.Close(testCtx(t))
}

// pidLine finds the pid the instance printed after prefix.
func pidLine(t *testing.T, inst runtime.Instance, prefix string) int {
	t.Helper()
	waitForLine(t, inst, prefix)
	for _, l := range inst.Logs(1000) {
		if s, ok := strings.CutPrefix(l, prefix); ok {
			pid, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatalf("no line %q", prefix)
	return 0
}

// The processes an instance started die with it: one that left the
// instance's process group always (the session or the cgroup still holds
// it), one that left its session only with cgroups.
func TestEscapeesDieWithTheInstance(t *testing.T) {
	for _, mode := range confinementModes(t) {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnvWith(t, process.Options{Cgroups: mode})
			inst := e.start(t, childSpec("escape"))
			echo(t, inst, "alive")
			group, session := pidLine(t, inst, "escaped-group "), pidLine(t, inst, "escaped-session ")
			if err := e.rt.Stop(testCtx(t), inst); err != nil {
				t.Fatal(err)
			}
			waitProcessGone(t, group)
			if mode != process.CgroupsNone {
				waitProcessGone(t, session)
				return
			}
			// The fallback cannot follow a process into a session of its
			// own (docs/security.md); it was adopted by this process, the
			// subreaper, which kills and reaps it here.
			if err := syscall.Kill(session, 0); err != nil {
				t.Fatalf("the session escapee %d is gone in the fallback too (%v); update this test and the docs", session, err)
			}
			_ = syscall.Kill(session, syscall.SIGKILL)
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(session, &ws, 0, nil); err != nil {
				t.Errorf("the escapee was not adopted by the subreaper: %v", err)
			}
		})
	}
}

// With cgroups, each instance runs in a cgroup of its own under the
// runtime's subtree, which goes with it.
func TestInstanceCgroup(t *testing.T) {
	if err := cgroupsUsable(t); err != nil {
		t.Skip("cgroups cannot be used here:", err)
	}
	e := newEnvWith(t, process.Options{Cgroups: process.CgroupsRequired})
	inst := e.start(t, childSpec("echo"))
	dir := instanceCgroup(t, inst.Info().PID)
	if !strings.Contains(dir, "/spear-") {
		t.Fatalf("instance process in cgroup %s, not in the runtime's subtree", dir)
	}
	tree := filepath.Dir(dir)
	if err := e.rt.Stop(testCtx(t), inst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the instance's cgroup %s is left behind (%v)", dir, err)
	}
	if err := e.rt.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tree); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the runtime's cgroup subtree %s is left behind after Close (%v)", tree, err)
	}
}

// instanceCgroup returns the directory of pid's cgroup.
func instanceCgroup(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	var mount string
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 8 && strings.Contains(l, " - cgroup2 ") {
			mount = f[4]
		}
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rel, ok := strings.CutPrefix(l, "0::"); ok {
			return filepath.Join(mount, rel)
		}
	}
	t.Fatalf("no cgroup v2 in %s", b)
	return ""
}

// A memory limit holds: through the cgroup, whose kill the stop reason
// names, or else through RLIMIT_DATA, which the Go runtime meets with a
// fatal "out of memory".
func TestMemoryLimit(t *testing.T) {
	tiny := buildTiny(t) // the test binary's race detector maps far more than the limit
	for _, mode := range confinementModes(t) {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnvWith(t, process.Options{Cgroups: mode})
			// RLIMIT_DATA counts address space mapped writable, touched or
			// not: a Go program needs some 100 MiB of it to start.
			spec := child{Spec: process.Spec{Command: tiny, Limits: process.Limits{Memory: 256 << 20}}}
			inst := e.start(t, spec)
			if out, err := invoke(t, inst, "alloc", "8"); err != nil {
				t.Fatalf("8 MiB under a 256 MiB limit: %q, %v", out, err)
			}
			enforcedByCgroup := false
			if mode != process.CgroupsNone {
				_, err := os.Stat(filepath.Join(instanceCgroup(t, inst.Info().PID), "memory.max"))
				enforcedByCgroup = err == nil
			}
			if out, err := invoke(t, inst, "alloc", "1024"); err == nil {
				t.Fatalf("1 GiB under a 256 MiB limit: %q", out)
			}
			waitDone(t, inst)
			reason := inst.Info().Reason
			if enforcedByCgroup && !strings.HasPrefix(reason, process.ReasonOutOfMemory) {
				t.Errorf("stop reason %q, want it to begin %q", reason, process.ReasonOutOfMemory)
			}
			if !enforcedByCgroup && reason != "exited with status 2" {
				t.Errorf("stop reason %q, want the Go runtime's fatal error: exited with status 2", reason)
			}
			t.Logf("enforced by the cgroup: %v; stop reason %q", enforcedByCgroup, reason)

			// Without the limit, the same allocation succeeds.
			inst = e.start(t, child{Spec: process.Spec{Command: tiny}})
			if out, err := invoke(t, inst, "alloc", "1024"); err != nil {
				t.Fatalf("1 GiB with no limit: %q, %v", out, err)
			}
		})
	}
}

// invoke runs method with payload on inst.
func invoke(t *testing.T, inst runtime.Instance, method, payload string) (string, error) {
	t.Helper()
	out, err := channel.Execute(testCtx(t), inst.Channel(), channel.Invocation{Method: method, Payload: []byte(payload)})
	return string(out), err
}

// The runtime records what could outlive the agent while it exists: its
// cgroup subtree, or without cgroups each instance's session.
func TestLeftoverRecords(t *testing.T) {
	for _, mode := range confinementModes(t) {
		t.Run(string(mode), func(t *testing.T) {
			state, err := statedir.Open(filepath.Join(t.TempDir(), "state"))
			if err != nil {
				t.Fatal(err)
			}
			defer state.Close()
			book, err := leftover.Open(state, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			records := func() []string {
				m, _ := filepath.Glob(state.Join(leftover.Dir, "*", "process.*"))
				for i := range m {
					m[i] = filepath.Base(m[i])
				}
				return m
			}
			e := newEnvWith(t, process.Options{Cgroups: mode, Leftovers: book})
			inst := e.start(t, childSpec("echo"))
			want := "process.spear-" // the subtree
			if mode == process.CgroupsNone {
				want = fmt.Sprintf("process.session-%d", inst.Info().PID)
			}
			if got := records(); len(got) != 1 || !strings.HasPrefix(got[0], want) {
				t.Fatalf("records %v while the instance runs, want one %s...", got, want)
			}
			if err := e.rt.Stop(testCtx(t), inst); err != nil {
				t.Fatal(err)
			}
			if err := e.rt.Close(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			if got := records(); len(got) != 0 {
				t.Errorf("records %v after the runtime closed", got)
			}
		})
	}
}

// Where the kernel gives the agent the controllers, an instance's cgroup
// holds its limits.
func TestCgroupLimitsInTheKernel(t *testing.T) {
	if err := cgroupsUsable(t); err != nil {
		t.Skip("cgroups cannot be used here:", err)
	}
	e := newEnvWith(t, process.Options{Cgroups: process.CgroupsRequired})
	lim := process.Limits{Memory: 256 << 20, CPU: 500, PIDs: 64}
	inst := e.start(t, child{Spec: process.Spec{Command: buildTiny(t), Limits: lim}})
	dir := instanceCgroup(t, inst.Info().PID)
	checked := 0
	for file, want := range map[string]string{"memory.max": "268435456", "cpu.max": "50000 100000", "pids.max": "64"} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if errors.Is(err, os.ErrNotExist) {
			continue // no such controller for the agent here: the limit fell back
		}
		if got := strings.TrimSpace(string(b)); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", file, got, err, want)
		}
		checked++
	}
	t.Logf("%d of 3 limits held by the cgroup", checked)
}
