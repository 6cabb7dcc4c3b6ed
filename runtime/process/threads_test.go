package process_test

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
)

var (
	manyInstances = flag.Int("spear.instances", 200, "how many instances TestThreadsStayFlat starts and stops (issue 7's figure: 10000)")
	batchSize     = flag.Int("spear.batch", 50, "how many of them TestThreadsStayFlat runs at once")
)

// buildTiny builds testdata/tiny, the smallest SDK instance, and returns
// its path. $SPEAR_TEST_TINY names one built already, for a machine
// without Go (a virtual machine that tries the package on another
// kernel).
func buildTiny(tb testing.TB) string {
	tb.Helper()
	if bin := os.Getenv("SPEAR_TEST_TINY"); bin != "" {
		return bin
	}
	bin := filepath.Join(tb.TempDir(), "tiny")
	out, err := exec.Command("go", "build", "-o", bin, "./testdata/tiny").CombinedOutput()
	if err != nil {
		tb.Fatalf("build testdata/tiny: %v\n%s", err, out)
	}
	return bin
}

// threads returns how many OS threads this process has.
func threads(tb testing.TB) int {
	tb.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status:", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatal("no Threads line in /proc/self/status")
	return 0
}

// TestThreadsStayFlat starts and stops -spear.instances instances,
// -spear.batch at a time, and checks that the agent's thread count does
// not grow with the instances it runs: no thread is held per instance.
// With one pinned per instance (as the parent-death signal once needed),
// a batch of 50 adds 50 threads.
//
//	go test ./runtime/process -run TestThreadsStayFlat -spear.instances 10000 -spear.batch 500 -v
func TestThreadsStayFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts hundreds of processes; skipped with -short")
	}
	tiny := buildTiny(t)
	e := newEnv(t)
	spec := child{Spec: process.Spec{Command: tiny}}
	batch := min(*batchSize, *manyInstances)

	var mu sync.Mutex
	peak := 0
	runBatch := func(n int) error {
		insts := make([]runtime.Instance, n)
		var g errgroup.Group
		g.SetLimit(16)
		for k := range insts {
			g.Go(func() error {
				inst, err := spec.start(testCtx(t), e.rt, newID())
				if err != nil {
					return err
				}
				insts[k] = inst
				out, err := channel.Execute(testCtx(t), inst.Channel(), channel.Invocation{Payload: []byte("x")})
				if err == nil && string(out) != "x" {
					err = fmt.Errorf("%s answered %q to %q", inst.ID(), out, "x")
				}
				return err
			})
		}
		err := g.Wait()
		// Every instance of the batch runs (or failed to start): count.
		now := threads(t)
		mu.Lock()
		peak = max(peak, now)
		mu.Unlock()
		for _, inst := range insts {
			if inst != nil {
				g.Go(func() error { return e.rt.Stop(testCtx(t), inst) })
			}
		}
		return errorsJoin(err, g.Wait())
	}

	base := threads(t)
	peak = base
	for done := 0; done < *manyInstances; done += batch {
		if err := runBatch(min(batch, *manyInstances-done)); err != nil {
			t.Fatalf("after %d instances: %v", done, err)
		}
	}
	after := threads(t)
	t.Logf("%d instances, %d at a time: %d threads before, at most %d while a batch ran, %d after",
		*manyInstances, batch, base, peak, after)
	if limit := base + batch/2; peak > limit || after > limit {
		t.Errorf("threads grew with the instances: %d before, peak %d, %d after (limit %d for batches of %d)",
			base, peak, after, limit, batch)
	}
}

// errorsJoin joins two errors, either of which may be nil.
func errorsJoin(a, b error) error {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return fmt.Errorf("%w; %w", a, b)
}
