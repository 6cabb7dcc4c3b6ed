package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	amd64 = Platform{OS: "linux", Architecture: "amd64"}
	arm64 = Platform{OS: "linux", Architecture: "arm64"}
)

func image(p Platform, content string) Image {
	return Image{
		Platform: p,
		Files: []File{
			{Path: "/usr/local/bin/app", Mode: 0o755, Data: []byte(content)},
			{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
			{Path: "/home/app", Mode: fs.ModeDir | 0o700, UID: 1000, GID: 1000},
		},
		Config: RunConfig{User: "1000:1000", Entrypoint: []string{"/usr/local/bin/app"}, Labels: map[string]string{"a": "b"}},
	}
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	created := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	d1, err := Write(dir, "v1", created, []Image{image(amd64, "amd64 binary"), image(arm64, "arm64 binary")}, map[string]string{"x": "y"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(dir, "v2", created, []Image{image(amd64, "v2 binary")}, nil); err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := l.Resolve("v1"); err != nil || got.Digest != d1.Digest {
		t.Errorf("resolve v1: %v, %v; want %s", got.Digest, err, d1.Digest)
	}
	if _, err := l.Resolve("v3"); err == nil {
		t.Error("resolved a tag that does not exist")
	}
	for p, want := range map[Platform]string{amd64: "amd64 binary", arm64: "arm64 binary"} {
		m, cfg, err := l.Image("v1", p)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OS != p.OS || cfg.Architecture != p.Architecture || !cfg.Created.Equal(created) || cfg.Config.User != "1000:1000" {
			t.Errorf("%s config %+v", p, cfg)
		}
		if m.Annotations["x"] != "y" {
			t.Errorf("%s manifest annotations %v", p, m.Annotations)
		}
		root := t.TempDir()
		if err := l.Extract(m, root); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(root, "usr/local/bin/app"))
		if err != nil || string(b) != want {
			t.Errorf("%s: app is %q, %v; want %q", p, b, err, want)
		}
		st, err := os.Stat(filepath.Join(root, "usr/local/bin/app"))
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: app mode %v, %v", p, st.Mode(), err)
		}
	}
	if _, _, err := l.Image("v1", Platform{OS: "linux", Architecture: "riscv64"}); err == nil {
		t.Error("found an image for a platform that was not built")
	}

	// Rewriting a tag replaces it and keeps the others.
	if _, err := Write(dir, "v1", created, []Image{image(amd64, "new")}, nil); err != nil {
		t.Fatal(err)
	}
	var top Index
	b, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	if err := json.Unmarshal(b, &top); err != nil || len(top.Manifests) != 2 {
		t.Errorf("index.json after rewriting v1: %s", b)
	}
}

func TestDeterministic(t *testing.T) {
	created := time.Unix(1700000000, 0)
	a, err := Write(t.TempDir(), "t", created, []Image{image(amd64, "same")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Write(t.TempDir(), "t", created, []Image{image(amd64, "same")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Write(t.TempDir(), "t", created, []Image{image(amd64, "different")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest || a.Digest == c.Digest {
		t.Errorf("digests %s, %s (same input), %s (other input)", a.Digest, b.Digest, c.Digest)
	}
}

func TestLayerTarOrderAndErrors(t *testing.T) {
	b, err := layerTar([]File{{Path: "/b/c", Mode: 0o644, Data: []byte("x")}, {Path: "/a", Mode: 0o600}}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(b))
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if got := strings.Join(names, ","); got != "a,b/,b/c" {
		t.Errorf("entries %s, want parents first, in order", got)
	}
	for name, files := range map[string][]File{
		"relative":      {{Path: "usr/bin/x"}},
		"duplicate":     {{Path: "/x"}, {Path: "/x"}},
		"same, unclean": {{Path: "/x"}, {Path: "/y/../x"}},
		"under a file":  {{Path: "/x", Mode: 0o644}, {Path: "/x/y", Mode: 0o644}},
		"root":          {{Path: "/"}},
	} {
		if _, err := layerTar(files, time.Unix(0, 0)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestTamperedBlobIsRefused(t *testing.T) {
	dir := t.TempDir()
	d, err := Write(dir, "t", time.Unix(0, 0), []Image{image(amd64, "payload")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := Open(dir)
	idx, err := l.Index(d)
	if err != nil {
		t.Fatal(err)
	}
	m, err := l.Manifest(idx.Manifests[0])
	if err != nil {
		t.Fatal(err)
	}
	layer := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(m.Layers[0].Digest, "sha256:"))
	b, _ := os.ReadFile(layer)
	b[len(b)/2] ^= 1
	if err := os.WriteFile(layer, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Extract(m, t.TempDir()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("extracting a tampered layer: %v", err)
	}
	if _, err := l.Blob(Descriptor{Digest: "sha256:../../etc/passwd"}); err == nil {
		t.Error("read a blob outside the layout")
	}
}

// tarOf builds a tar of the given headers, each regular file holding "x".
func tarOf(hs ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		if h.Typeflag == tar.TypeReg {
			h.Size = 1
		}
		_ = tw.WriteHeader(h)
		if h.Typeflag == tar.TypeReg {
			_, _ = tw.Write([]byte("x"))
		}
	}
	_ = tw.Close()
	return buf.Bytes()
}

func TestUntarRefusesEscapes(t *testing.T) {
	for name, data := range map[string][]byte{
		"dot-dot":  tarOf(&tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}),
		"absolute": tarOf(&tar.Header{Name: "/etc/evil", Typeflag: tar.TypeReg, Mode: 0o644}),
		"symlink":  tarOf(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc"}),
		"device":   tarOf(&tar.Header{Name: "dev", Typeflag: tar.TypeChar}),
	} {
		parent := t.TempDir()
		dst := filepath.Join(parent, "root")
		if err := untar(tar.NewReader(bytes.NewReader(data)), dst, 1<<20); err == nil {
			t.Errorf("%s: extracted", name)
		}
		checkConfined(t, parent, dst)
	}
}

// checkConfined fails if anything but dst exists in parent.
func checkConfined(t *testing.T, parent, dst string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if filepath.Join(parent, e.Name()) != dst {
			t.Errorf("%s written outside the root", e.Name())
		}
	}
}

// FuzzUntar feeds arbitrary tar streams to the extractor: whatever they
// hold, nothing lands outside the root, and the size limit holds (a sparse
// entry of many gigabytes of holes once made it write for ever).
func FuzzUntar(f *testing.F) {
	f.Add(tarOf(&tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(tarOf(&tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(tarOf(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, &tar.Header{Name: "d/../../x", Typeflag: tar.TypeReg}))
	f.Add(tarOf(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: ".."}))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent, err := os.MkdirTemp("", "untar-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(parent)
		dst := filepath.Join(parent, "root")
		_ = untar(tar.NewReader(bytes.NewReader(data)), dst, 1<<20)
		checkConfined(t, parent, dst)
	})
}
