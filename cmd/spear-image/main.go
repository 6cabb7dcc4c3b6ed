// Command spear-image builds Spear's container images, spearlet and the
// example function, as OCI image layouts, with the Go toolchain alone (no
// container daemon). Run it from the module:
//
//	go run ./cmd/spear-image                          # both images, linux/amd64 and linux/arm64, into dist/images
//	go run ./cmd/spear-image -platforms linux/amd64 spearlet
//
// Each image's layout is a directory (dist/images/spearlet,
// dist/images/examples/echo) that registry clients push as it is;
// docs/kubernetes.md shows how with skopeo, crane and oras.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spear-go/spear/internal/ociimage"
	"github.com/spear-go/spear/internal/spearimage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "spear-image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("spear-image", flag.ContinueOnError)
	out := fs.String("out", "dist/images", "output directory; each image's OCI layout goes to OUT/NAME")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated OS/ARCH list")
	repo := fs.String("repo", spearimage.DefaultRepository, "repository the images are named under, for their labels")
	version := fs.String("version", spearimage.Version, "version the images are tagged with")
	revision := fs.String("revision", "", "source revision for the labels (default: git rev-parse HEAD, when in a git checkout)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: spear-image [flags] [image...]\n\nimages:")
		for _, d := range spearimage.Definitions {
			fmt.Fprintf(fs.Output(), " %s", d.Name)
		}
		fmt.Fprintf(fs.Output(), " (default: all)\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	var defs []spearimage.Definition
	for _, name := range fs.Args() {
		d, ok := spearimage.Lookup(name)
		if !ok {
			return fmt.Errorf("unknown image %q", name)
		}
		defs = append(defs, d)
	}
	if len(defs) == 0 {
		defs = spearimage.Definitions
	}
	var plats []ociimage.Platform
	for _, p := range strings.Split(*platforms, ",") {
		os, arch, ok := strings.Cut(strings.TrimSpace(p), "/")
		if !ok || os == "" || arch == "" {
			return fmt.Errorf("platform %q: want OS/ARCH such as linux/amd64", p)
		}
		plats = append(plats, ociimage.Platform{OS: os, Architecture: arch})
	}
	module, err := spearimage.ModuleRoot(ctx, ".")
	if err != nil {
		return err
	}
	if *revision == "" {
		*revision = git(ctx, module, "rev-parse", "HEAD")
	}
	created, err := sourceDate(ctx, module)
	if err != nil {
		return err
	}
	for _, d := range defs {
		res, err := spearimage.Build(ctx, d, spearimage.Options{
			Module:     module,
			Out:        *out,
			Platforms:  plats,
			Repository: *repo,
			Version:    *version,
			Revision:   *revision,
			Created:    created,
			Log:        func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) },
		})
		if err != nil {
			return err
		}
		fmt.Printf("%s\t%s\t%s\n", res.Ref, res.Layout, res.Index.Digest)
		for _, p := range plats {
			fmt.Printf("\t%s\t%.1f MiB compressed\n", p, float64(res.LayerSizes[p.String()])/(1<<20))
		}
	}
	return nil
}

// sourceDate is the images' creation time: $SOURCE_DATE_EPOCH, else the
// last commit's time, else now. The first two make rebuilds reproducible.
func sourceDate(ctx context.Context, module string) (time.Time, error) {
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", v, err)
		}
		return time.Unix(n, 0), nil
	}
	if v := git(ctx, module, "log", "-1", "--format=%ct"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.Unix(n, 0), nil
		}
	}
	return time.Now(), nil
}

// git runs git in dir and returns its trimmed output, or "" on failure.
func git(ctx context.Context, dir string, args ...string) string {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
