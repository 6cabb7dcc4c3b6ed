package spearimage_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spear-go/spear/internal/ociimage"
	"github.com/spear-go/spear/internal/spearimage"
)

// Each image is built for this machine's platform, read back through its
// layout, and checked: entrypoint, user, labels, a static binary that
// runs from the unpacked root filesystem, and a build that gives the
// same digest twice.
func TestImages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the images: skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	module, err := spearimage.ModuleRoot(ctx, ".")
	if err != nil {
		t.Fatal(err)
	}
	platform := ociimage.Platform{OS: "linux", Architecture: goruntime.GOARCH}
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, def := range spearimage.Definitions {
		t.Run(strings.ReplaceAll(def.Name, "/", "-"), func(t *testing.T) {
			build := func(out string) *spearimage.Result {
				res, err := spearimage.Build(ctx, def, spearimage.Options{
					Module: module, Out: out, Platforms: []ociimage.Platform{platform},
					Revision: "0123456789abcdef", Created: created,
				})
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			out := t.TempDir()
			res := build(out)
			if want := spearimage.DefaultRepository + "/" + def.Name + ":" + spearimage.Version; res.Ref != want {
				t.Errorf("ref %q, want %q", res.Ref, want)
			}
			t.Logf("%s: %s, layer %d bytes compressed", res.Ref, res.Index.Digest, res.LayerSizes[platform.String()])

			l, err := ociimage.Open(res.Layout)
			if err != nil {
				t.Fatal(err)
			}
			m, cfg, err := l.Image(spearimage.Version, platform)
			if err != nil {
				t.Fatal(err)
			}
			rc := cfg.Config
			if !slices.Equal(rc.Entrypoint, []string{def.Binary}) || !slices.Equal(rc.Cmd, def.Cmd) {
				t.Errorf("entrypoint %q cmd %q, want %q %q", rc.Entrypoint, rc.Cmd, def.Binary, def.Cmd)
			}
			if want := strconv.Itoa(spearimage.UID) + ":" + strconv.Itoa(spearimage.GID); rc.User != want || strings.HasPrefix(rc.User, "0") {
				t.Errorf("user %q, want the non-root %s", rc.User, want)
			}
			wantLabels := map[string]string{
				"org.opencontainers.image.title":    def.Title,
				"org.opencontainers.image.version":  spearimage.Version,
				"org.opencontainers.image.source":   spearimage.Source,
				"org.opencontainers.image.revision": "0123456789abcdef",
				"org.opencontainers.image.created":  "2026-01-02T03:04:05Z",
			}
			for k, v := range wantLabels {
				if rc.Labels[k] != v {
					t.Errorf("label %s=%q, want %q", k, rc.Labels[k], v)
				}
			}
			if rc.Labels["org.opencontainers.image.description"] == "" {
				t.Error("no description label")
			}
			if cfg.OS != platform.OS || cfg.Architecture != platform.Architecture || !cfg.Created.Equal(created) {
				t.Errorf("config os/arch/created %s/%s/%s", cfg.OS, cfg.Architecture, cfg.Created)
			}
			if len(m.Layers) != 1 || len(cfg.RootFS.DiffIDs) != 1 {
				t.Errorf("%d layers, %d diff ids; want one of each", len(m.Layers), len(cfg.RootFS.DiffIDs))
			}

			// Unpack it as a container runtime would, and run the binary.
			root := t.TempDir()
			if err := l.Extract(m, root); err != nil {
				t.Fatal(err)
			}
			bin := filepath.Join(root, def.Binary)
			if err := spearimage.CheckStatic(bin); err != nil {
				t.Error(err)
			}
			for _, dir := range []string{"tmp", "home/nonroot"} {
				if st, err := os.Stat(filepath.Join(root, dir)); err != nil || !st.IsDir() {
					t.Errorf("/%s missing from the image: %v", dir, err)
				}
			}
			passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
			if !strings.Contains(string(passwd), "nonroot:x:"+strconv.Itoa(spearimage.UID)) {
				t.Errorf("/etc/passwd does not name the image's user:\n%s", passwd)
			}
			if def.Name == "spearlet" {
				out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
				if err != nil || !strings.HasPrefix(string(out), "spearlet "+spearimage.Version) {
					t.Errorf("spearlet version from the image: %q, %v", out, err)
				}
			}

			// The same input gives the same image (checked on the small one:
			// compressing spearlet twice more under -race takes long).
			if def.Name == "spearlet" {
				return
			}
			if again := build(t.TempDir()); again.Index.Digest != res.Index.Digest {
				t.Errorf("rebuilt with the same input: digest %s, then %s", res.Index.Digest, again.Index.Digest)
			}
		})
	}
}
