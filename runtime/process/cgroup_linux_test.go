package process

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spear-go/spear/runtime"
)

// fakeCgroup makes dir look like a cgroup: its interface files, empty.
func fakeCgroup(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{"memory.max", "memory.oom.group", "memory.swap.max", "cpu.max", "pids.max", "memory.events", "cgroup.kill"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// What the tree writes into an instance's cgroup, in the kernel's
// formats, for the controllers it has; the limits it cannot hold are
// handed back for the fallback.
func TestCgroupLimitFiles(t *testing.T) {
	lim := Limits{Memory: 256 << 20, CPU: 1500, PIDs: 64}
	for _, tt := range []struct {
		ctrl []string
		want map[string]string
		rest Limits
	}{
		{[]string{"memory", "cpu", "pids"}, map[string]string{
			"memory.max": "268435456", "memory.oom.group": "1", "memory.swap.max": "0",
			"cpu.max": "150000 100000", "pids.max": "64",
		}, Limits{}},
		{[]string{"cpu"}, map[string]string{"cpu.max": "150000 100000", "memory.max": "", "pids.max": ""},
			Limits{Memory: 256 << 20, PIDs: 64}},
		{nil, map[string]string{"memory.max": "", "cpu.max": "", "pids.max": ""}, lim},
	} {
		t.Run(strings.Join(tt.ctrl, ","), func(t *testing.T) {
			tree := &cgroupTree{path: t.TempDir(), ctrl: map[string]bool{}}
			for _, c := range tt.ctrl {
				tree.ctrl[c] = true
			}
			// A directory with the files the kernel would give it.
			dir := filepath.Join(tree.path, "i")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			fakeCgroup(t, dir)
			cg, rest, err := tree.createIn(dir, lim)
			if err != nil {
				t.Fatal(err)
			}
			defer cg.closeFD()
			if rest != tt.rest {
				t.Errorf("left for the fallback %+v, want %+v", rest, tt.rest)
			}
			for file, want := range tt.want {
				b, _ := os.ReadFile(filepath.Join(dir, file))
				if string(b) != want {
					t.Errorf("%s = %q, want %q", file, b, want)
				}
			}
		})
	}
}

func TestCgroupOOMKilled(t *testing.T) {
	dir := t.TempDir()
	cg := &cgroup{path: dir, fd: -1, memory: runtime.Bytes(64 << 20)}
	for events, want := range map[string]bool{
		"low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\noom_group_kill 0\n": false,
		"low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n": true,
		"oom_kill 0\noom_group_kill 2\n":                              true,
		"":                                                            false,
	} {
		if err := os.WriteFile(filepath.Join(dir, "memory.events"), []byte(events), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := cg.oomKilled(); got != want {
			t.Errorf("oomKilled with memory.events %q = %v, want %v", events, got, want)
		}
	}
	os.Remove(filepath.Join(dir, "memory.events"))
	if cg.oomKilled() {
		t.Error("oomKilled without memory.events (no memory controller)")
	}
}
