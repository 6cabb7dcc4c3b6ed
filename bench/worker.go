package bench

import (
	"context"
	"os"
	"path/filepath"

	"github.com/spear-go/spear/internal/checkout"
)

// minimalWorker builds the minimal SDK binary, cmd/spear-worker (the small
// worker spearlet runs for its default function), into dir and returns its
// path. Outside a checkout, or without the go command, the comparisons
// that need it are skipped.
func minimalWorker(ctx context.Context, dir string) (string, error) {
	cwd, _ := os.Getwd()
	root := checkout.Root(cwd)
	if root == "" {
		return "", &errSkip{"not run inside a Spear checkout, where cmd/spear-worker is"}
	}
	out := filepath.Join(dir, "spear-worker")
	if err := checkout.Build(ctx, root, checkout.WorkerPackage, out); err != nil {
		return "", &errSkip{err.Error()}
	}
	return out, nil
}
