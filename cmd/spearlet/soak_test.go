package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/client"
)

var soak = flag.Bool("spear.soak", false, "run the long soak: 60 s of 200 callers with an instance SIGKILLed every 2 s")

// soakPlan is the shape of a soak run.
type soakPlan struct {
	length  time.Duration // of the load
	callers int           // concurrent, each one invocation at a time
	every   time.Duration // between two kills
}

// TestSoakKills runs a bounded load of concurrent callers against a pool
// of process instances while an instance is SIGKILLed at a steady pace,
// and checks what the issue asks of the pool under SIGKILL:
//
//   - the only invocations that fail are those already running on a
//     killed instance: each failure names a killed instance and began
//     before that instance was killed; none that arrived after a kill
//     fails because of it;
//   - every failure is typed (502 instance_failed) and says which
//     instance and why;
//   - the pool ends with its instances running.
//
// The normal suite runs a short version; -spear.soak runs 60 s of 200
// callers with a kill every 2 s.
func TestSoakKills(t *testing.T) {
	plan := soakPlan{length: 4 * time.Second, callers: 40, every: 500 * time.Millisecond}
	if *soak {
		plan = soakPlan{length: 60 * time.Second, callers: 200, every: 2 * time.Second}
	}
	d := startDaemon(t, "--config", writeConfig(t, fmt.Sprintf(`
functions:
  - name: soak
    runtime: process
    command: %q
    args: [worker]
    min_instances: 4
    max_instances: 12
    max_concurrency: 64
    max_queue: 4096
    restart: {policy: on-failure, initial_backoff: 100ms, max_backoff: 2s}
`, binary)))
	eventually(t, "four instances running", func() bool { return countRunning(instances(t, d, "soak")) >= 4 })

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: plan.callers + 16}}
	t.Cleanup(hc.CloseIdleConnections)
	c := &client.Client{Addr: d.addr, StateDir: d.stateDir, HTTPClient: hc}

	var mu sync.Mutex
	killedAt := map[string]time.Time{} // instance id -> when it was SIGKILLed
	var outcomes []soakOutcome

	ctx, stop := context.WithTimeout(context.Background(), plan.length)
	defer stop()
	var wg sync.WaitGroup
	for range plan.callers {
		wg.Go(func() {
			for ctx.Err() == nil {
				began := time.Now()
				_, err := c.Invoke(context.Background(), "soak", []byte("20ms"), client.InvokeOptions{Method: "sleep", Timeout: 30 * time.Second})
				mu.Lock()
				outcomes = append(outcomes, soakOutcome{began: began, err: err})
				mu.Unlock()
			}
		})
	}
	kills := 0
	tick := time.NewTicker(plan.every)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			victim, ok := pickVictim(instances(t, d, "soak"))
			if !ok {
				t.Log("no running instance to kill at this tick")
				continue
			}
			if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
				t.Fatalf("kill %s (pid %d): %v", victim.ID, victim.PID, err)
			}
			// The kill is done once the process is dead, its sockets
			// closed: until then it may still be taking requests.
			waitDead(t, victim.PID)
			mu.Lock()
			killedAt[victim.ID] = time.Now()
			mu.Unlock()
			kills++
		}
	}
	tick.Stop()
	wg.Wait()

	failed, running := 0, 0
	reasons := map[string]int{}
	for _, o := range outcomes {
		if o.err == nil {
			continue
		}
		failed++
		id, why, err := attribute(o.err)
		if err != nil {
			t.Errorf("an untyped or unattributed failure: %v", err)
			continue
		}
		at, wasKilled := killedAt[id]
		switch {
		case !wasKilled:
			t.Errorf("a failure on %s, which was never killed: %v", id, o.err)
		case o.began.After(at):
			t.Errorf("an invocation that began %s after %s was killed failed because of it: %v", o.began.Sub(at), id, o.err)
		default:
			running++
			reasons[why]++
		}
	}
	t.Logf("%d callers for %s, %d kills: %d invocations, %d failed, all %d of them running on a killed instance when it was killed",
		plan.callers, plan.length, kills, len(outcomes), failed, running)
	for why, n := range reasons {
		t.Logf("  %d failed with %q", n, why)
	}
	if kills == 0 || len(outcomes) == 0 {
		t.Fatalf("%d kills, %d invocations: the soak did not run", kills, len(outcomes))
	}
	eventually(t, "the pool's instances running", func() bool {
		fns, err := d.client.Functions(testCtx(t))
		if err != nil || len(fns) != 1 {
			return false
		}
		f := fns[0]
		list := instances(t, d, "soak")
		return f.Ready >= 4 && f.Ready == countRunning(list) && f.Health == "serving"
	})
	fns, _ := d.client.Functions(testCtx(t))
	t.Logf("the pool ends with %d instances ready (health %s)", fns[0].Ready, fns[0].Health)
}

type soakOutcome struct {
	began time.Time
	err   error
}

// failure is what a failed invocation must say: the instance ("instance
// process:soak-…") and, after it, why.
var failure = regexp.MustCompile(`instance ((?:[a-z0-9.-]+:)?process:soak-[0-9a-f]+): (.*)$`)

// attribute returns the instance a failure names and its reason, or an
// error when the failure is not a typed one naming an instance.
func attribute(err error) (id, why string, _ error) {
	var ce *client.Error
	if !errors.As(err, &ce) {
		return "", "", fmt.Errorf("not an API error: %w", err)
	}
	if ce.StatusCode != http.StatusBadGateway || ce.Code != "instance_failed" {
		return "", "", fmt.Errorf("status %d %s: %w", ce.StatusCode, ce.Code, err)
	}
	m := failure.FindStringSubmatch(ce.Message)
	if m == nil {
		return "", "", fmt.Errorf("names no instance: %w", err)
	}
	why = m[2]
	if i := strings.Index(why, "spear: "); i >= 0 {
		why = why[i:] // the category and its cause
	}
	why = socketPath.ReplaceAllString(why, "…") // one line per kind, not per socket
	return m[1], why, nil
}

var socketPath = regexp.MustCompile(`\S+\.sock->@`)

// waitDead waits until process pid has exited, every thread of it: its
// leader a zombie with no thread left beside it, or reaped. (A leader
// thread can be a zombie while other threads still hold the files open.)
func waitDead(t *testing.T, pid int) {
	t.Helper()
	ctx := testCtx(t)
	for {
		state, _, ok := procStat(pid)
		if !ok {
			return // reaped
		}
		if state == "Z" || state == "X" {
			if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err != nil || len(tasks) <= 1 {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("process %d still alive after SIGKILL", pid)
		case <-time.After(100 * time.Microsecond):
		}
	}
}

// pickVictim returns the running instance started longest ago, so the
// kills go round the pool.
func pickVictim(list []api.Instance) (api.Instance, bool) {
	var live []api.Instance
	for _, in := range list {
		if in.Status == "running" && in.PID > 0 {
			live = append(live, in)
		}
	}
	if len(live) == 0 {
		return api.Instance{}, false
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Created.Before(live[j].Created) })
	return live[0], true
}

func countRunning(list []api.Instance) int {
	n := 0
	for _, in := range list {
		if in.Status == "running" {
			n++
		}
	}
	return n
}

// A function whose instances cannot start goes into crash-loop back-off:
// an invocation then fails at once, with the last start error, and
// "functions" and "instances" show the state, the last error and the
// next retry (issue 7's finding).
func TestCrashLoopShown(t *testing.T) {
	d := startDaemon(t, "--config", writeConfig(t, `
functions:
  - name: broken
    runtime: process
    command: /bin/false
    restart: {initial_backoff: 1m, max_backoff: 1m}
`))
	for range 3 {
		if _, err := d.client.Invoke(testCtx(t), "broken", nil, client.InvokeOptions{}); err == nil {
			t.Fatal("an invocation of a function that cannot start succeeded")
		}
	}
	// A timeout of an hour: only failing fast lets this return in time.
	_, err := d.client.Invoke(testCtx(t), "broken", nil, client.InvokeOptions{Timeout: time.Hour})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.StatusCode != http.StatusServiceUnavailable || !strings.Contains(ce.Message, "crash-loop") ||
		!strings.Contains(ce.Message, "last error") {
		t.Fatalf("invocation in crash-loop back-off: %v", err)
	}
	out, err := d.cli(t, "", "functions")
	if err != nil || !strings.Contains(out, "crash_looping") || !strings.Contains(out, "3 starts failed in a row") ||
		!strings.Contains(out, "in ") || !strings.Contains(out, "start failed: ") {
		t.Errorf("spearlet functions:\n%s%v", out, err)
	}
	out, err = d.cli(t, "", "instances")
	if err != nil || !strings.Contains(out, "function broken: crash_looping: 3 starts failed in a row; next retry in") ||
		!strings.Contains(out, "; last error: start failed: ") {
		t.Errorf("spearlet instances:\n%s%v", out, err)
	}
}
