package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/wasmecho"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/runtime/wasm"
)

// runColdStart times an invocation of a function scaled to zero through
// the agent: it starts an instance and waits for it (a cold start), for a
// process function and a wasm one (not with Quick: compiling the module
// takes seconds, a minute under -race). Each figure comes with the same
// invocation on a warm instance.
func runColdStart(ctx context.Context, o Options, p *printer) error {
	pb, err := newProcessBench(o)
	if err != nil {
		return err
	}
	defer pb.close()
	exe, f, prt := pb.exe, pb.f, pb.prt
	cfg := agent.Config{Functions: []agent.FunctionConfig{
		{Name: "process", Runtime: "process", Spec: process.Spec{Command: exe, Env: runtime.Env{startEnv: "worker"}}},
	}}
	rts := []runtime.Runtime{prt}
	if !o.Quick {
		wrt, err := wasm.New(wasm.Options{Factory: f})
		if err != nil {
			return err
		}
		if err := wrt.Compile(ctx, wasmecho.Module); err != nil {
			return err
		}
		rts = append(rts, wrt)
		cfg.Functions = append(cfg.Functions, agent.FunctionConfig{Name: "wasm", Runtime: "wasm", Spec: wasm.Spec{Code: wasmecho.Module}})
	}
	a, err := agent.New(cfg, agent.Options{Runtimes: rts})
	if err != nil {
		return err
	}
	defer a.Close(context.Background())
	rounds := o.Rounds * 2
	for _, fc := range cfg.Functions {
		fn := fc.Name
		var cold, warm []float64
		for range rounds {
			if err := scaleToZero(ctx, a, fn); err != nil {
				return err
			}
			for _, into := range []*[]float64{&cold, &warm} {
				t0 := time.Now()
				if _, err := a.Invoke(ctx, agent.Invocation{Function: fn, Payload: []byte("x")}); err != nil {
					return fmt.Errorf("%s: %w", fn, err)
				}
				*into = append(*into, float64(time.Since(t0)))
			}
		}
		p.line("us", "coldstart."+fn, "%.0f", median(cold)/1e3)
		p.line("us", "coldstart."+fn+".warm", "%.0f", median(warm)/1e3)
	}
	return nil
}

// scaleToZero stops every instance of fn, as an idle timeout would.
func scaleToZero(ctx context.Context, a *agent.Agent, fn string) error {
	list, err := a.Instances(fn)
	if err != nil {
		return err
	}
	for _, in := range list {
		if in.Status != string(runtime.StatusStopped) {
			if err := a.DeleteInstance(ctx, in.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// connCallers is how many callers share one instance in the connections
// comparison.
const connCallers = 64

// runConnections measures what more connections per instance give 64
// concurrent callers of one process instance: invocations per second over
// 1, 2 and 4 connections, in interleaved rounds. The instance and the
// agent share the machine's cores, so the figure says what the extra
// reader and writer goroutines buy where both sides are busy.
func runConnections(ctx context.Context, o Options, p *printer) error {
	pb, err := newProcessBench(o)
	if err != nil {
		return err
	}
	defer pb.close()
	exe, prt := pb.exe, pb.prt
	counts := []int{1, 2, 4}
	chans := make([]*channel.Channel, len(counts))
	for i, n := range counts {
		set := runtime.Settings{Channel: &channel.Config{Connections: n, MaxConnections: 4}}
		id := spear.InstanceID{Runtime: spear.Process, Name: fmt.Sprintf("conns-%d", n)}
		inst, err := prt.Start(ctx, id, set, process.Spec{Command: exe, Env: runtime.Env{startEnv: "worker"}})
		if err != nil {
			return err
		}
		ch := inst.Channel()
		for ch.Connections() < n {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		chans[i] = ch
	}
	ops := make([][]float64, len(counts))
	for r := range o.Rounds {
		for k := range counts {
			i := (k + r) % len(counts) // each count goes first in turn
			n, err := hammer(ctx, chans[i], o.batch())
			if err != nil {
				return err
			}
			ops[i] = append(ops[i], n)
		}
	}
	base := median(ops[0])
	for i, n := range counts {
		m := median(ops[i])
		name := fmt.Sprintf("conns%d", n)
		p.line("ops", name, "%.0f", m)
		if i > 0 {
			p.line("ratio", name, "%.2f", base/m) // time per op against one connection
		}
	}
	return nil
}

// hammer runs connCallers callers of ch for d and returns invocations per
// second.
func hammer(ctx context.Context, ch *channel.Channel, d time.Duration) (float64, error) {
	var done atomic.Int64
	var first error
	var once sync.Once
	stop := time.Now().Add(d)
	t0 := time.Now()
	var wg sync.WaitGroup
	for range connCallers {
		wg.Go(func() {
			payload := make([]byte, 64)
			for time.Now().Before(stop) {
				if _, err := channel.Execute(ctx, ch, channel.Invocation{Payload: payload}); err != nil {
					once.Do(func() { first = err })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(t0).Seconds(), first
}

// processBench is what the comparisons that start process instances
// share: the binary they spawn as an SDK worker, a channel factory and a
// process runtime on it.
type processBench struct {
	exe string
	f   *channel.Factory
	prt *process.Runtime
}

func newProcessBench(o Options) (*processBench, error) {
	exe, err := executable(o)
	if err != nil {
		return nil, err
	}
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		return nil, err
	}
	prt, err := process.New(process.Options{Factory: f})
	if err != nil {
		f.Close()
		return nil, err
	}
	return &processBench{exe: exe, f: f, prt: prt}, nil
}

func (b *processBench) close() {
	b.prt.Close(context.Background())
	b.f.Close()
}
