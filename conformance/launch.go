package conformance

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/chantls"
	"github.com/spear-go/spear/internal/statedir"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/runtime/wasm"
	"github.com/spear-go/spear/transport"
	grpctransport "github.com/spear-go/spear/transport/grpc"
	"github.com/spear-go/spear/transport/tcp"
	"github.com/spear-go/spear/transport/unix"
)

// launcher starts the target: as the agent does (start, through a
// runtime), or against the runner's own agent (launch).
type launcher interface {
	// describe names the target for the report.
	describe() string
	// runtimeType is the runtime type of the target's instances.
	runtimeType() spear.RuntimeType
	// transports are the transports to check.
	transports() []channel.Type
	// start starts an instance through the runtime, with channel config
	// cfg, and waits until it is connected.
	start(ctx context.Context, id spear.InstanceID, cfg channel.Config) (runtime.Instance, error)
	// ready waits until inst can take a request (a wasm instance being
	// reset cannot).
	ready(ctx context.Context, inst runtime.Instance) error
	// stop stops inst through the runtime.
	stop(ctx context.Context, inst runtime.Instance) error
	// resets counts the times the runtime replaced inst's module.
	resets(inst runtime.Instance) int
	// cleanExit returns nil when inst, now stopped, ended by itself with
	// status 0, and an error saying how it ended otherwise.
	cleanExit(inst runtime.Instance) error
	// launch starts an instance with id, on transport t, that connects
	// to the runner's own agent, its secret handed over as h says.
	launch(ctx context.Context, t channel.Type, id spear.InstanceID, h handoff) (*rawProc, error)
	// close stops everything and removes temporary files.
	close()
}

// base is what both launchers share: options, a temporary directory and
// the channel factory.
type base struct {
	opts    *Options
	dir     string
	factory *channel.Factory
}

func newLauncher(opts *Options) (launcher, error) {
	dir, err := os.MkdirTemp("", "spear-conformance-")
	if err != nil {
		return nil, err
	}
	tlsAgent, err := runnerTLS(dir, opts.TLS)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	f, err := channel.NewFactory(channel.Options{
		SocketDir: dir,
		Defaults:  channel.Config{MaxPayload: opts.MaxPayload},
		TLS:       tlsAgent,
		Logger:    opts.Logger,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b := base{opts: opts, dir: dir, factory: f}
	var l launcher
	if len(opts.Wasm) > 0 {
		l, err = newWasmLauncher(b)
	} else {
		l, err = newProcessLauncher(b)
	}
	if err != nil {
		b.close()
		return nil, err
	}
	return l, nil
}

// runnerTLS is the runner's TLS in mode, with a certificate generated in
// dir; nil when mode is off.
func runnerTLS(dir string, mode chantls.Mode) (*chantls.Agent, error) {
	if mode == "" || mode == chantls.None {
		return nil, nil
	}
	state, err := statedir.Open(filepath.Join(dir, "state"))
	if err != nil {
		return nil, err
	}
	defer state.Close() // the files stay; the runner needs no lock
	return chantls.Load(state, chantls.Config{Mode: mode})
}

func (b base) close() {
	b.factory.Close()
	os.RemoveAll(b.dir)
}

func (b base) startTimeout() time.Duration { return b.opts.Timeout / 2 }

// processLauncher runs a command as process instances.
type processLauncher struct {
	base
	rt *process.Runtime
}

func newProcessLauncher(b base) (*processLauncher, error) {
	rt, err := process.New(process.Options{Factory: b.factory, Logger: b.opts.Logger})
	if err != nil {
		return nil, err
	}
	return &processLauncher{base: b, rt: rt}, nil
}

func (l *processLauncher) describe() string               { return strings.Join(l.opts.Command, " ") }
func (l *processLauncher) runtimeType() spear.RuntimeType { return spear.Process }
func (l *processLauncher) transports() []channel.Type     { return l.opts.Transports }

func (l *processLauncher) start(ctx context.Context, id spear.InstanceID, cfg channel.Config) (runtime.Instance, error) {
	set := runtime.Settings{
		Function:     "conformance",
		Channel:      &cfg,
		StartTimeout: l.startTimeout(),
		StopGrace:    l.opts.Patience,
	}
	return l.rt.Start(ctx, id, set, process.Spec{
		Command: l.opts.Command[0],
		Args:    l.opts.Command[1:],
		Env:     runtime.EnvOf(l.opts.Env),
		Dir:     l.opts.Dir,
	})
}

func (l *processLauncher) ready(context.Context, runtime.Instance) error { return nil }

func (l *processLauncher) stop(ctx context.Context, inst runtime.Instance) error {
	return l.rt.Stop(ctx, inst)
}

func (l *processLauncher) resets(runtime.Instance) int { return 0 }

func (l *processLauncher) cleanExit(inst runtime.Instance) error {
	st := inst.(*process.Instance).ExitState()
	switch {
	case st == nil:
		return errors.New("the process is still running")
	case st.ExitCode() != 0:
		return fmt.Errorf("the process ended: %s", st)
	}
	return nil
}

func (l *processLauncher) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*l.opts.Patience)
	defer cancel()
	_ = l.rt.Close(ctx)
	l.base.close()
}

// launch starts the command with the SPEAR_* environment of a listener of
// the runner's own.
func (l *processLauncher) launch(ctx context.Context, t channel.Type, id spear.InstanceID, h handoff) (*rawProc, error) {
	ln, err := l.listen(t)
	if err != nil {
		return nil, err
	}
	p := newRawProc(id, h.want, l.opts.MaxPayload)
	cmd := exec.Command(l.opts.Command[0], l.opts.Command[1:]...)
	cmd.Dir = l.opts.Dir
	cmd.Env = append(environ(), l.opts.Env...)
	cmd.Env = append(cmd.Env,
		spear.EnvInstanceID+"="+id.String(),
		spear.EnvChannel+"="+string(t),
		spear.EnvAddress+"="+ln.Addr())
	if err := l.handOver(cmd, p, h); err != nil {
		ln.Close()
		return nil, err
	}
	cmd.SysProcAttr = processGroup()
	outR, outW, err := os.Pipe()
	if err != nil {
		ln.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, outW
	err = cmd.Start()
	outW.Close()
	for _, f := range cmd.ExtraFiles {
		f.Close() // the child's copies are its own now
	}
	if err != nil {
		outR.Close()
		ln.Close()
		return nil, fmt.Errorf("start %s: %w", l.opts.Command[0], err)
	}
	p.pid = cmd.Process.Pid
	p.signal = cmd.Process.Signal
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // output
		defer wg.Done()
		copyLines(outR, p.out)
		outR.Close()
	}()
	go func() { // reaper
		defer wg.Done()
		err := cmd.Wait()
		p.setExit(err)
	}()
	go func() { // connections
		defer wg.Done()
		p.serve(ln)
	}()
	p.stop = func() {
		killGroup(cmd.Process.Pid)
		ln.Close()
		<-p.exited
		wg.Wait()
	}
	return p, nil
}

// listen opens a listener of the runner's own on transport t.
func (l *processLauncher) listen(t channel.Type) (transport.Listener, error) {
	switch t {
	case channel.Unix:
		dir, err := unix.PrivateDir(l.dir)
		if err != nil {
			return nil, err
		}
		return unix.Listen(filepath.Join(dir, "raw.sock"), unix.Options{MaxPayload: l.opts.MaxPayload})
	case channel.TCP:
		return tcp.Listen("127.0.0.1:0", tcp.Options{MaxPayload: l.opts.MaxPayload})
	case channel.GRPC:
		return grpctransport.Listen("127.0.0.1:0", grpctransport.Options{MaxPayload: l.opts.MaxPayload})
	}
	return nil, fmt.Errorf("%w: %s", spear.ErrUnsupportedChannelType, t)
}

// handOver sets up cmd to receive the secrets of h: a pipe for the
// descriptor, a file, the environment.
func (l *processLauncher) handOver(cmd *exec.Cmd, p *rawProc, h handoff) error {
	if h.fd != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		// Written before the child starts: a pipe holds far more than a
		// secret, and the child reads to EOF.
		_, err = w.WriteString(hex.EncodeToString(h.fd) + "\n")
		w.Close()
		if err != nil {
			r.Close()
			return err
		}
		p.fdIdentity = fdIdentity(r)
		cmd.ExtraFiles = []*os.File{r} // descriptor 3 in the child
		p.fd = 3
		cmd.Env = append(cmd.Env, spear.EnvSecretFD+"="+strconv.Itoa(p.fd))
	}
	if h.file != nil {
		f, err := os.CreateTemp(l.dir, "secret-")
		if err != nil {
			return err
		}
		_, err = f.WriteString(" " + hex.EncodeToString(h.file) + "\n")
		f.Close()
		if err != nil {
			return err
		}
		cmd.Env = append(cmd.Env, spear.EnvSecretFile+"="+f.Name())
	}
	if h.env != nil {
		cmd.Env = append(cmd.Env, spear.EnvSecret+"="+hex.EncodeToString(h.env))
	}
	return nil
}

// environ is the runner's environment without SPEAR_* variables, which
// belong to the instance.
func environ() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPEAR_") {
			out = append(out, kv)
		}
	}
	return out
}

// copyLines adds each line of r to t until r ends.
func copyLines(r io.Reader, t *tail) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		t.add(sc.Text())
	}
	_, _ = io.Copy(io.Discard, r) // a line over the buffer: keep draining
}

// wasmLauncher runs a wasm module through the wasm runtime.
type wasmLauncher struct {
	base
	rt   *wasm.Runtime
	host *wasmHost // runs the module on its own for launch, made on first use
}

func newWasmLauncher(b base) (*wasmLauncher, error) {
	rt, err := wasm.New(wasm.Options{Factory: b.factory, Logger: b.opts.Logger, CacheDir: filepath.Join(b.dir, "cache")})
	if err != nil {
		return nil, err
	}
	return &wasmLauncher{base: b, rt: rt}, nil
}

func (l *wasmLauncher) describe() string {
	return fmt.Sprintf("wasm module (%d bytes)", len(l.opts.Wasm))
}
func (l *wasmLauncher) runtimeType() spear.RuntimeType { return spear.Wasm }
func (l *wasmLauncher) transports() []channel.Type     { return []channel.Type{channel.Memory} }

// wasmMemoryLimit is the guest's memory cap: room for a request and an
// answer at the largest payload limit, and the copies a guest makes.
const wasmMemoryLimit = 512 << 20

func (l *wasmLauncher) start(ctx context.Context, id spear.InstanceID, cfg channel.Config) (runtime.Instance, error) {
	set := runtime.Settings{
		Function:     "conformance",
		Channel:      &cfg,
		StartTimeout: l.startTimeout(),
		StopGrace:    l.opts.Patience,
	}
	return l.rt.Start(ctx, id, set, wasm.Spec{
		Code:   l.opts.Wasm,
		Memory: wasmMemoryLimit,
		Env:    runtime.EnvOf(l.opts.Env),
	})
}

func (l *wasmLauncher) ready(ctx context.Context, inst runtime.Instance) error {
	return inst.(*wasm.Instance).WaitRunning(ctx)
}

func (l *wasmLauncher) stop(ctx context.Context, inst runtime.Instance) error {
	return l.rt.Stop(ctx, inst)
}

func (l *wasmLauncher) resets(inst runtime.Instance) int { return inst.(*wasm.Instance).Resets() }

func (l *wasmLauncher) cleanExit(inst runtime.Instance) error {
	// The runtime's words for a module that returned from _start or
	// exited with status 0 (runtime/wasm, exited).
	if r := inst.Info().Reason; !strings.HasPrefix(r, "wasm guest exited") {
		return fmt.Errorf("the module ended: %s", r)
	}
	return nil
}

func (l *wasmLauncher) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*l.opts.Patience)
	defer cancel()
	_ = l.rt.Close(ctx)
	if l.host != nil {
		l.host.close()
	}
	l.base.close()
}

// launch runs the module on its own, its standard streams connected to
// the runner's agent. A guest gets its secret from the runtime in its
// environment, so only that hand-off applies.
func (l *wasmLauncher) launch(ctx context.Context, _ channel.Type, id spear.InstanceID, h handoff) (*rawProc, error) {
	if h.fd != nil || h.file != nil {
		return nil, skip("a wasm guest gets its secret in its WASI environment, from the runtime")
	}
	if l.host == nil {
		host, err := newWasmHost(ctx, l.opts.Wasm, filepath.Join(l.dir, "cache"))
		if err != nil {
			return nil, err
		}
		l.host = host
	}
	return l.host.run(id, h.env, l.opts)
}
