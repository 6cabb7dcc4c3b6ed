package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/rawguest"
	"github.com/spear-go/spear/internal/wasmecho"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/wasm"
)

// copyModule is the smallest module that echoes: it exports its memory and
// "echo"(dst, src, len), one memory.copy. Written out by hand, it is the
// limit for a call into wasm: no runtime, no framing. (A Go command
// module's own exports cannot be called while its main serves, so the
// embedded Go module cannot be its own baseline.)
var copyModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
	0x01, 0x07, 0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, // type 0: (i32, i32, i32) -> ()
	0x03, 0x02, 0x01, 0x00, // function 0 has type 0
	0x05, 0x03, 0x01, 0x00, 0x01, // one memory of one page
	0x07, 0x11, 0x02, // two exports:
	0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00, // "memory", memory 0
	0x04, 'e', 'c', 'h', 'o', 0x00, 0x00, // "echo", function 0
	0x0a, 0x0e, 0x01, 0x0c, 0x00, // code: one body of 12 bytes, no locals
	0x20, 0x00, 0x20, 0x01, 0x20, 0x02, // local.get 0, 1, 2
	0xfc, 0x0a, 0x00, 0x00, // memory.copy
	0x0b, // end
}

// copyCall is the wasm64 baseline: 64 bytes written into a module's
// memory, echoed by its exported function, and read back.
type copyCall struct {
	rt    wazero.Runtime
	mem   api.Memory
	echo  api.Function
	in    []byte
	out   []byte
	stack []uint64
}

func newCopyCall(ctx context.Context, size int) (*copyCall, error) {
	rt := wazero.NewRuntime(ctx)
	mod, err := rt.Instantiate(ctx, copyModule)
	if err != nil {
		rt.Close(ctx)
		return nil, err
	}
	return &copyCall{rt: rt, mem: mod.Memory(), echo: mod.ExportedFunction("echo"),
		in: payload(size), out: make([]byte, size), stack: make([]uint64, 3)}, nil
}

func (c *copyCall) call() error {
	const src, dst = 0, 32 << 10
	if !c.mem.Write(src, c.in) {
		return errShortEcho
	}
	c.stack[0], c.stack[1], c.stack[2] = dst, src, uint64(len(c.in))
	if err := c.echo.CallWithStack(context.Background(), c.stack); err != nil {
		return err
	}
	b, ok := c.mem.Read(dst, uint32(len(c.out)))
	if !ok {
		return errShortEcho
	}
	copy(c.out, b)
	return nil
}

// wasmPair compares an invocation of the embedded wasm echo module through
// the wasm runtime (channel.Call on its channel: the memory transport,
// the bridge to the guest's stdin and stdout, the guest library) with a
// direct call of copyModule's export through wazero.
func wasmPair(ctx context.Context, size int) (*pair, error) {
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		return nil, err
	}
	wrt, err := wasm.New(wasm.Options{Factory: f})
	if err != nil {
		f.Close()
		return nil, err
	}
	closeAll := func() {
		_ = wrt.Close(context.Background())
		f.Close()
	}
	id := spear.InstanceID{Runtime: spear.Wasm, Name: "bench-wasm"}
	inst, err := wrt.Start(ctx, id, runtime.Settings{StartTimeout: 2 * time.Minute}, wasm.Spec{Code: wasmecho.Module})
	if err != nil {
		closeAll()
		return nil, err
	}
	base, err := newCopyCall(ctx, size)
	if err != nil {
		closeAll()
		return nil, err
	}
	inv := channel.Invocation{Payload: payload(size)}
	ch := inst.Channel()
	ours := func() error {
		res, err := channel.Call(context.Background(), ch, inv)
		if err != nil {
			return err
		}
		n := len(res.Payload)
		res.Release()
		if n <= size { // the module answers "<id>|<payload>"
			return errShortEcho
		}
		return nil
	}
	return &pair{
		ours:  serial(ours),
		base:  serial(base.call),
		close: func() { base.rt.Close(context.Background()); closeAll() },
	}, nil
}

// runWasmStart times wasm starts from the compiled module:
// internal/rawguest's module from Start until it is connected and
// authenticated, which is all Start waits for (wasmstart.agent, the
// agent's own cost: the module has no runtime to start); the embedded Go
// module until its first answer (wasmstart.go; not with -quick, since
// compiling it takes seconds, a minute under -race); and the bare
// instantiation of copyModule in wazero (wasmstart.floor).
func runWasmStart(ctx context.Context, o Options, p *printer) error {
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		return err
	}
	defer f.Close()
	wrt, err := wasm.New(wasm.Options{Factory: f})
	if err != nil {
		return err
	}
	defer wrt.Close(context.Background())
	rounds := o.Rounds * 3

	// The module answers nothing, not even the terminate signal: a short
	// grace, so that Stop (untimed) ends it at once.
	agent, err := timeWasmStarts(ctx, wrt, rawguest.Connect, rounds*10, runtime.Settings{StopGrace: time.Millisecond}, nil)
	if err != nil {
		return err
	}
	p.line("us", "wasmstart.agent", "%.1f", agent/1e3)

	if !o.Quick {
		answer := func(inst runtime.Instance) error {
			_, err := channel.Execute(ctx, inst.Channel(), channel.Invocation{Payload: []byte("x")})
			return err
		}
		goStart, err := timeWasmStarts(ctx, wrt, wasmecho.Module, rounds, runtime.Settings{}, answer)
		if err != nil {
			return err
		}
		p.line("us", "wasmstart.go", "%.0f", goStart/1e3)
	}

	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	compiled, err := rt.CompileModule(ctx, copyModule)
	if err != nil {
		return err
	}
	var floor []float64
	for range rounds {
		t0 := time.Now()
		mod, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
		floor = append(floor, float64(time.Since(t0)))
		if err != nil {
			return err
		}
		_ = mod.Close(ctx)
	}
	p.line("us", "wasmstart.floor", "%.1f", median(floor)/1e3)
	return nil
}

// timeWasmStarts compiles code, then starts rounds instances of it one
// after another, each timed from Start until then (nil) returns, and
// stopped untimed; it returns the median in nanoseconds.
func timeWasmStarts(ctx context.Context, wrt *wasm.Runtime, code []byte, rounds int, set runtime.Settings, then func(runtime.Instance) error) (float64, error) {
	if err := wrt.Compile(ctx, code); err != nil {
		return 0, err
	}
	spec := wasm.Spec{Code: code}
	ts := make([]float64, 0, rounds)
	for i := range rounds {
		id := spear.InstanceID{Runtime: spear.Wasm, Name: fmt.Sprintf("wstart-%d", i)}
		t0 := time.Now()
		inst, err := wrt.Start(ctx, id, set, spec)
		if err != nil {
			return 0, err
		}
		if then != nil {
			err = then(inst)
		}
		ts = append(ts, float64(time.Since(t0)))
		if serr := wrt.Stop(ctx, inst); err == nil {
			err = serr
		}
		if err != nil {
			return 0, err
		}
	}
	return median(ts), nil
}
