package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/transport"
)

// wasmHost runs a wasm module on its own, outside the wasm runtime, with
// its standard streams connected to the runner's agent: the checks that
// need a hostile agent cannot go through the runtime, which is the agent.
// It shares the runtime's compilation cache directory, so the module is
// compiled once.
type wasmHost struct {
	engine   wazero.Runtime
	cache    wazero.CompilationCache
	compiled wazero.CompiledModule
}

func newWasmHost(ctx context.Context, module []byte, cacheDir string) (*wasmHost, error) {
	cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
	if err != nil {
		return nil, err
	}
	engine := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(true))
	h := &wasmHost{engine: engine, cache: cache}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, engine); err != nil {
		h.close()
		return nil, err
	}
	if h.compiled, err = engine.CompileModule(ctx, module); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

func (h *wasmHost) close() {
	ctx := context.Background()
	h.engine.Close(ctx)
	h.cache.Close(ctx)
}

// run starts the module as instance id with secret in its environment;
// the connection to the runner's agent is its stdin and stdout.
func (h *wasmHost) run(id spear.InstanceID, secret spear.Secret, opts *Options) (*rawProc, error) {
	p := newRawProc(id, secret, opts.MaxPayload)
	agentSide, guestSide := net.Pipe()
	stderr := &lineWriter{t: p.out}
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithArgs("conformance").
		WithStdin(guestSide).
		WithStdout(guestSide).
		WithStderr(stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithRandSource(rand.Reader)
	for _, kv := range opts.Env {
		k, v, _ := strings.Cut(kv, "=")
		cfg = cfg.WithEnv(k, v)
	}
	cfg = cfg.WithEnv(spear.EnvInstanceID, id.String()).
		WithEnv(spear.EnvSecret, hex.EncodeToString(secret)).
		WithEnv(spear.EnvChannel, string(channel.Memory)).
		WithEnv(spear.EnvAddress, "stdio")
	ctx, kill := context.WithCancel(context.Background())
	go func() {
		mod, err := h.engine.InstantiateModule(ctx, h.compiled, cfg)
		if mod != nil {
			_ = mod.Close(context.Background())
		}
		guestSide.Close()
		var exit *sys.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 0 {
			err = nil
		}
		p.setExit(err)
	}()
	p.conns <- transport.NewStreamConn(agentSide, transport.Info{Transport: "stdio"}, opts.MaxPayload, 0)
	p.stop = func() {
		kill()
		// A guest blocked reading stdin is not reached by the context.
		agentSide.Close()
		guestSide.Close()
		<-p.exited
		stderr.flush()
	}
	return p, nil
}

// lineWriter splits a guest's stderr into lines for a tail.
type lineWriter struct {
	t   *tail
	buf bytes.Buffer
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.buf.Write(b)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(b), nil
		}
		w.t.add(strings.TrimSuffix(line, "\n"))
	}
}

func (w *lineWriter) flush() {
	if w.buf.Len() > 0 {
		w.t.add(w.buf.String())
		w.buf.Reset()
	}
}
