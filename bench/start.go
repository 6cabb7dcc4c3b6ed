package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/wasmecho"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/runtime/wasm"
	"github.com/spear-go/spear/sdk"
)

// startEnv selects what a process started by the start comparison does:
// "worker" serves as an SDK instance, "dial" connects to the unix socket
// named by dialEnv, sends one byte and exits (the bare-spawn baseline).
const (
	startEnv = "SPEAR_BENCH_START"
	dialEnv  = "SPEAR_BENCH_DIAL"
)

// startChild runs the start comparison's child modes; it reports false
// when this process is not one.
func startChild() (int, bool) {
	switch os.Getenv(startEnv) {
	case "worker":
		sdk.Run(func(_ context.Context, r *sdk.Request) ([]byte, error) { return r.Payload, nil })
		return 0, true
	case "dial":
		c, err := net.Dial("unix", os.Getenv(dialEnv))
		if err == nil {
			_, err = c.Write([]byte{1})
			c.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "spear-bench dial child:", err)
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// runStart compares a process instance's start to ready (spawn, connect,
// authenticate, first request answered) with a bare spawn of the same
// binary that connects back and sends one byte; stopping is not timed.
// It also times a wasm instance's start from its cached compiled module.
func runStart(ctx context.Context, o Options, p *printer) error {
	pb, err := newProcessBench(o)
	if err != nil {
		return err
	}
	defer pb.close()
	exe, f, prt := pb.exe, pb.f, pb.prt
	spec := process.Spec{Command: exe, Env: runtime.Env{startEnv: "worker"}}
	n := 0
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
		if serr := prt.Stop(ctx, inst); err == nil {
			err = serr
		}
		return d, err
	}
	dir, err := os.MkdirTemp("", "spear-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "dial.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	defer ln.Close()
	base := func() (time.Duration, error) {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), startEnv+"=dial", dialEnv+"="+sock)
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		c, err := ln.Accept()
		if err == nil {
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		d := time.Since(t0)
		if werr := cmd.Wait(); err == nil {
			err = werr
		}
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
	if o.Quick {
		return nil // compiling the module takes seconds, a minute under -race
	}
	return runWasmStart(ctx, f, rounds, p)
}

// runWasmStart times a wasm instance from a cached compiled module to its
// first answer.
func runWasmStart(ctx context.Context, f *channel.Factory, rounds int, p *printer) error {
	wrt, err := wasm.New(wasm.Options{Factory: f})
	if err != nil {
		return err
	}
	defer wrt.Close(context.Background())
	if err := wrt.Compile(ctx, wasmecho.Module); err != nil {
		return err
	}
	spec := wasm.Spec{Code: wasmecho.Module}
	var ts []float64
	for i := range rounds {
		id := spear.InstanceID{Runtime: spear.Wasm, Name: fmt.Sprintf("wstart-%d", i)}
		t0 := time.Now()
		inst, err := wrt.Start(ctx, id, runtime.Settings{}, spec)
		if err != nil {
			return err
		}
		_, err = channel.Execute(ctx, inst.Channel(), channel.Invocation{Payload: []byte("x")})
		ts = append(ts, float64(time.Since(t0)))
		if serr := wrt.Stop(ctx, inst); err == nil {
			err = serr
		}
		if err != nil {
			return err
		}
	}
	p.line("us", "wasmstart", "%.0f", median(ts)/1e3)
	return nil
}

// executable is the binary the start comparison spawns.
func executable(o Options) (string, error) {
	if o.Exe != "" {
		return o.Exe, nil
	}
	return os.Executable()
}
