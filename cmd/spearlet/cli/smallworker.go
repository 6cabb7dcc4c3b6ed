package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/internal/checkout"
	"github.com/spear-go/spear/runtime/process"
)

// EnvWorker names a small worker binary to run for process.WorkerCommand
// instead of building one.
const EnvWorker = "SPEARLET_WORKER"

// workerBuildTimeout bounds building the small worker.
const workerBuildTimeout = 2 * time.Minute

// workerCommand returns the command line that process.WorkerCommand
// stands for, which the embedded default's "echo" function runs: the small
// worker binary (cmd/spear-worker, which links neither client-go nor
// wazero), given by $SPEARLET_WORKER or else built on demand from the
// checkout spearlet runs in, into the user's cache directory; or, where it
// cannot be built, this binary's own "worker" subcommand, which serves the
// same function at the cost of the whole agent's memory per instance.
// Nothing is built unless a process function of cfg uses the worker; one
// that a reload adds later runs the worker subcommand.
func workerCommand(ctx context.Context, cfg agent.Config, log *slog.Logger) []string {
	if p := os.Getenv(EnvWorker); p != "" {
		return []string{p}
	}
	var err error
	if usesWorker(cfg) {
		var path string
		if path, err = buildWorker(ctx); err == nil {
			return []string{path}
		}
	}
	self, serr := os.Executable()
	if serr != nil {
		log.Warn("no small worker, and this binary is not found either", "err", errors.Join(err, serr))
		return nil
	}
	if err != nil {
		log.Info("small worker not built; instances run this binary's worker subcommand instead", "reason", err)
	}
	return []string{self, "worker"}
}

// usesWorker reports whether a process function runs the worker.
func usesWorker(cfg agent.Config) bool {
	for _, fn := range cfg.Functions {
		if spec, ok := fn.Spec.(process.Spec); ok && spec.Command == process.WorkerCommand {
			return true
		}
	}
	return false
}

// buildWorker builds cmd/spear-worker from the checkout the working
// directory is in, which must be the module this spearlet was built from,
// into the user's cache directory, and returns the binary's path. Go's
// build cache makes a build with nothing changed take well under a second,
// and the binary is always the checkout's current one.
func buildWorker(ctx context.Context) (string, error) {
	if bi, ok := debug.ReadBuildInfo(); !ok || bi.Main.Path != checkout.Module {
		return "", errors.New("spearlet was not built from the Spear module")
	}
	cwd, _ := os.Getwd()
	root := checkout.Root(cwd)
	if root == "" {
		return "", errors.New("not run inside a Spear checkout (set " + EnvWorker + " to a built cmd/spear-worker)")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	path := workerPath(cache, root)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".spear-worker-*")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name()) // gone already once renamed
	ctx, cancel := context.WithTimeout(ctx, workerBuildTimeout)
	defer cancel()
	if err := checkout.Build(ctx, root, checkout.WorkerPackage, tmp.Name()); err != nil {
		return "", err
	}
	// Renamed into place, so a concurrent start never runs a half-written
	// binary.
	return path, os.Rename(tmp.Name(), path)
}

// workerPath is where the worker of the checkout at root goes in the
// cache directory: one directory per checkout, named by a hash of its
// path, so that spearlets of two checkouts (two versions of the protocol,
// perhaps) never replace each other's worker.
func workerPath(cache, root string) string {
	sum := sha256.Sum256([]byte(root))
	return filepath.Join(cache, "spearlet", "worker", hex.EncodeToString(sum[:6]), "spear-worker")
}
