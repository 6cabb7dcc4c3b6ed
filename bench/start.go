package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/sdk"
)

// startEnv, set to "worker", makes the running binary serve as an SDK
// instance that echoes: the instance process of BenchmarkAgentRoundTrip64,
// which keeps the instance's allocations out of the agent's count.
const startEnv = "SPEAR_BENCH_START"

// startChild serves as that instance; it reports false when this process
// is not one.
func startChild() (int, bool) {
	if os.Getenv(startEnv) != "worker" {
		return 0, false
	}
	sdk.Run(func(_ context.Context, r *sdk.Request) ([]byte, error) { return r.Payload, nil })
	return 0, true
}

// runStart compares a process instance of the minimal SDK binary
// (cmd/spear-worker) from spawn to ready (spawn, connect, authenticate,
// first request answered) with a bare spawn of the same binary until it
// connects to a plain unix socket; stopping is not timed. It reports the
// instance's resident memory after its first answer (mem start.rss).
func runStart(ctx context.Context, o Options, p *printer) error {
	pb, err := newProcessBench(o)
	if err != nil {
		return err
	}
	defer pb.close()
	prt := pb.prt
	dir, err := os.MkdirTemp("", "spear-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	exe, err := minimalWorker(ctx, dir)
	if err != nil {
		return err
	}
	spec := process.Spec{Command: exe}
	n := 0
	var rss []float64
	ours := func() (time.Duration, error) {
		n++
		id := spear.InstanceID{Runtime: spear.Process, Name: fmt.Sprintf("start-%d", n)}
		t0 := time.Now()
		inst, err := prt.Start(ctx, id, runtime.Settings{}, spec)
		if err != nil {
			return 0, err
		}
		_, err = channel.Execute(ctx, inst.Channel(), channel.Invocation{Payload: []byte("x")})
		d := time.Since(t0)
		if kb, rerr := processRSS(inst.Info().PID); rerr == nil {
			rss = append(rss, float64(kb))
		}
		if serr := prt.Stop(ctx, inst); err == nil {
			err = serr
		}
		return d, err
	}
	sock := filepath.Join(dir, "dial.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	defer ln.Close()
	bareEnv := append(os.Environ(),
		spear.EnvInstanceID+"=process:bare", spear.EnvSecret+"="+strings.Repeat("ab", 32),
		spear.EnvChannel+"=unix", spear.EnvAddress+"="+sock)
	base := func() (time.Duration, error) {
		cmd := exec.Command(exe)
		cmd.Env = bareEnv
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		c, err := ln.Accept()
		d := time.Since(t0)
		if err == nil {
			c.Close()
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return d, err
	}
	rounds := o.Rounds * 3
	var oursT, baseT []float64
	for i := range rounds {
		// Alternate which goes first, as the other comparisons do.
		sides := []func() (time.Duration, error){ours, base}
		if i%2 == 1 {
			slices.Reverse(sides)
		}
		for j, side := range sides {
			d, err := side()
			if err != nil {
				return err
			}
			if (j == 0) == (i%2 == 0) {
				oursT = append(oursT, float64(d))
			} else {
				baseT = append(baseT, float64(d))
			}
		}
	}
	mo, mb := median(oursT), median(baseT)
	p.line("ratio", "start", "%.2f", mo/mb)
	p.line("time", "start", "%.2fµs", mo/1e3)
	p.line("time", "start.base", "%.2fµs", mb/1e3)
	if len(rss) > 0 {
		p.line("mem", "start.rss", "%.0f", median(rss))
	}
	return nil
}

// executable is the binary the comparisons that start instances of the
// running binary spawn (Options.Exe, else this process's own).
func executable(o Options) (string, error) {
	if o.Exe != "" {
		return o.Exe, nil
	}
	return os.Executable()
}
