package cli

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/internal/wasmecho"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/runtime/wasm"
)

// defaultConfig is what serve runs without a config file: a process
// function "echo" running the small worker binary (smallworker.go), and a
// wasm function "wasm-echo" running the example module built in below.
//
//go:embed default.yaml
var defaultConfig []byte

// runtimes are the runtimes this spearlet serves. Each runtime's package,
// imported here, also registers how to read its part of a function's
// configuration; kubernetes.go adds the kubernetes runtime unless the
// binary is built with -tags nokubernetes, which leaves client-go out.
var runtimes = map[spear.RuntimeType]agent.NewRuntime{
	spear.Process: func(env agent.RuntimeEnv) (runtime.Runtime, error) {
		opts := process.Options{
			Factory:   env.Factory,
			Logger:    env.Logger,
			Worker:    workerCommand(context.Background(), env.Config, env.Logger),
			Cgroups:   process.CgroupMode(env.Config.Process.Cgroups),
			Leftovers: env.Leftovers,
		}
		if r := env.Config.Process.UserRange; r != "" {
			var err error
			if opts.UserRange, err = process.ParseUIDRange(r); err != nil {
				return nil, fmt.Errorf("process: %w", err)
			}
		}
		return process.New(opts)
	},
	spear.Wasm: func(env agent.RuntimeEnv) (runtime.Runtime, error) {
		return wasm.New(wasm.Options{
			Factory:  env.Factory,
			Logger:   env.Logger,
			CacheDir: wasmCacheDir(env),
			Modules:  map[string][]byte{"wasmecho": wasmecho.Module},
		})
	},
}

// wasmCacheDir is where compiled wasm modules are kept across restarts,
// so that a module is compiled once per machine and user rather than at
// every start: the configured wasm.cache_dir (one that cannot be used is
// an error, from the runtime), else defaultWasmCacheDir, or none when that
// cannot be created (a read-only root filesystem); then modules are
// compiled in memory at every start.
func wasmCacheDir(env agent.RuntimeEnv) string {
	if env.Config.Wasm.CacheDir != "" {
		return env.Config.Wasm.CacheDir
	}
	dir, err := defaultWasmCacheDir()
	if err == nil {
		err = os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		env.Logger.Warn("no wasm compilation cache; set wasm.cache_dir to keep compiled modules across restarts", "err", err)
		return ""
	}
	return dir
}

// defaultWasmCacheDir is the compiled modules' directory in the user's
// cache directory.
func defaultWasmCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "spearlet", "wasm"), nil
}
