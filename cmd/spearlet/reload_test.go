package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/client"
)

// reloadConfig is the configuration of TestReloadUnderLoad: the worker
// functions named, each with two instances kept; roll's max_instances
// is rollMax.
func reloadConfig(rollMax string, names ...string) string {
	var b strings.Builder
	b.WriteString("functions:\n")
	for _, n := range names {
		max := "4"
		if n == "roll" {
			max = rollMax
		}
		b.WriteString("  - {name: " + n + ", runtime: process, command: \"@self\", args: [worker], min_instances: 2, max_instances: " + max + "}\n")
	}
	return b.String()
}

// loadStats counts a function's invocations under the load.
type loadStats struct {
	ok, failed, refused atomic.Int64 // refused: not_found, for a function being removed
}

// TestReloadUnderLoad changes the configuration of a running daemon while
// invocations run without pause: SIGHUP adds a function and changes
// another, "spearlet reload" removes a third, and a configuration with a
// mistake is refused. No invocation fails; the unchanged function keeps
// its instances; every instance of the changed and the removed functions
// is gone, processes included.
func TestReloadUnderLoad(t *testing.T) {
	path := writeConfig(t, reloadConfig("4", "same", "roll", "gone"))
	d := startDaemon(t, "--config", path)
	ctx := testCtx(t)
	live := func(function string) map[string]int {
		ids := map[string]int{}
		for _, in := range instances(t, d, function) {
			if in.Status != "stopped" {
				ids[in.ID] = in.PID
			}
		}
		return ids
	}
	for _, fn := range []string{"same", "roll", "gone"} {
		eventually(t, fn+"'s two instances", func() bool { return len(live(fn)) == 2 })
	}
	same, roll, gone := live("same"), live("roll"), live("gone")

	// The load: 8 workers, each invoking the functions of the current
	// phase in turn, as fast as they answer.
	stats := map[string]*loadStats{"same": {}, "roll": {}, "gone": {}, "added": {}}
	var phase atomic.Value
	phase.Store([]string{"same", "roll", "gone"})
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var errsMu sync.Mutex
	var errs []string
	for w := range 8 {
		wg.Go(func() {
			c := &client.Client{Addr: d.addr, StateDir: d.stateDir}
			for i := w; loadCtx.Err() == nil; i++ {
				fns := phase.Load().([]string)
				fn := fns[i%len(fns)]
				_, err := c.Invoke(loadCtx, fn, []byte("x"), client.InvokeOptions{})
				switch {
				case err == nil:
					stats[fn].ok.Add(1)
				case loadCtx.Err() != nil:
				case fn == "gone" && client.IsCode(err, "not_found"):
					stats[fn].refused.Add(1)
				default:
					stats[fn].failed.Add(1)
					errsMu.Lock()
					errs = append(errs, fn+": "+err.Error())
					errsMu.Unlock()
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)

	// SIGHUP: add "added", change "roll".
	if err := os.WriteFile(path, []byte(reloadConfig("3", "same", "roll", "gone", "added")), 0o600); err != nil {
		t.Fatal(err)
	}
	d.signal(syscall.SIGHUP)
	eventually(t, "the SIGHUP reload", func() bool {
		fns, err := d.client.Functions(ctx)
		if err != nil || !slices.ContainsFunc(fns, func(f api.Function) bool { return f.Name == "added" }) {
			return false
		}
		now := live("roll")
		for id := range roll {
			if _, ok := now[id]; ok {
				return false
			}
		}
		return len(now) == 2
	})
	phase.Store([]string{"same", "roll", "gone", "added"})
	time.Sleep(300 * time.Millisecond)

	// spearlet reload: remove "gone".
	if err := os.WriteFile(path, []byte(reloadConfig("3", "same", "roll", "added")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := d.cli(t, "", "reload")
	if err != nil || !regexpMatch(`(?m)^gone\s+removed$`, out) || !regexpMatch(`(?m)^same\s+unchanged$`, out) {
		t.Fatalf("spearlet reload: %v\n%s", err, out)
	}
	phase.Store([]string{"same", "roll", "added"})
	for _, in := range instances(t, d, "") {
		if in.Function == "gone" {
			t.Errorf("instance %s of the removed function is still listed (%s)", in.ID, in.Status)
		}
	}
	if _, err := d.client.Instances(ctx, "gone"); !client.IsCode(err, "not_found") {
		t.Errorf("instances of the removed function: %v, want not_found", err)
	}

	// A configuration with a mistake is refused whole; the old one serves.
	if err := os.WriteFile(path, []byte(reloadConfig("3", "same", "roll", "added")+"  - {name: typo, runtime: process, comand: x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = d.cli(t, "", "reload")
	if err == nil || !strings.Contains(err.Error(), path+`:5:36: functions[3].comand: unknown field; did you mean "command"?`) {
		t.Errorf("invalid reload: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	stopLoad()
	wg.Wait()

	// The unchanged function kept its instances; the changed and removed
	// ones' processes are gone.
	if now := live("same"); len(now) != 2 || !sameKeys(now, same) {
		t.Errorf("the unchanged function's instances went from %v to %v", same, now)
	}
	for _, old := range []map[string]int{roll, gone} {
		for id, pid := range old {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process %d of %s is still there (%v)", pid, id, err)
			}
		}
	}
	var total, failed int64
	for _, fn := range []string{"same", "roll", "gone", "added"} {
		s := stats[fn]
		t.Logf("%-6s %5d ok, %d failed, %d refused after its removal", fn, s.ok.Load(), s.failed.Load(), s.refused.Load())
		total += s.ok.Load() + s.failed.Load()
		failed += s.failed.Load()
		if s.ok.Load() == 0 {
			t.Errorf("no invocation of %s succeeded", fn)
		}
	}
	t.Logf("%d invocations across three reloads, %d failed", total, failed)
	if failed > 0 {
		t.Errorf("%d invocations failed; the first: %v", failed, errs[:min(len(errs), 5)])
	}
}

func sameKeys(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

func regexpMatch(expr, s string) bool { return regexp.MustCompile(expr).MatchString(s) }

// Issue 7: a relative command runs from the config file's directory,
// whatever the daemon's working directory is.
func TestRelativeCommand(t *testing.T) {
	path := writeConfig(t, "functions:\n  - {name: rel, runtime: process, command: ./bin/fn, min_instances: 1}\n")
	dir := filepath.Dir(path)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nexec " + binary + " worker\n"
	if err := os.WriteFile(filepath.Join(dir, "bin", "fn"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "--config", path) // its working directory is the test's, not dir
	out, err := d.cli(t, "", "invoke", "rel", "hi")
	if err != nil || !strings.HasSuffix(out, "|hi") {
		t.Fatalf("invoke: %q, %v", out, err)
	}
}
