// Package spearimage builds Spear's container images, spearlet and the
// example function examples/echo, as OCI image layouts (internal/ociimage)
// without a container daemon: it cross-compiles each binary with the Go
// toolchain, statically (CGO_ENABLED=0), and puts it alone in an image
// that runs as a non-root user. cmd/spear-image is its command line;
// docs/kubernetes.md says how to push the result.
package spearimage

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spear-go/spear/internal/ociimage"
)

// Version is the release the images, and the manifests in
// deploy/kubernetes that name them, are tagged with.
const Version = "v0.1.0"

// DefaultRepository is where the images are published.
const DefaultRepository = "ghcr.io/spear-go"

// Source is the project's source repository, for the images' labels.
const Source = "https://github.com/spear-go/spear"

// The user the images run as: nonroot, with no shell and no rights.
const (
	UID = 65532
	GID = 65532
)

// Definition describes one image.
type Definition struct {
	// Name is the image's name under the repository ("spearlet",
	// "examples/echo"), and its layout's directory under the output.
	Name string
	// Package is the Go package of its binary, relative to the module.
	Package string
	// Binary is where the binary lives in the image; it is the entrypoint.
	Binary string
	// Cmd is the entrypoint's default arguments.
	Cmd []string
	// Title and Description label the image.
	Title, Description string
}

// Definitions are Spear's images.
var Definitions = []Definition{
	{
		Name:        "spearlet",
		Package:     "./cmd/spearlet",
		Binary:      "/usr/local/bin/spearlet",
		Cmd:         []string{"serve"},
		Title:       "spearlet",
		Description: "Spear node agent: runs functions in processes, wasm modules and Kubernetes pods",
	},
	{
		Name:        "examples/echo",
		Package:     "./examples/echo",
		Binary:      "/usr/local/bin/echo",
		Title:       "spear example echo",
		Description: "Example Spear function: echoes, upper-cases and streams its payload",
	},
}

// Lookup returns the definition named name.
func Lookup(name string) (Definition, bool) {
	for _, d := range Definitions {
		if d.Name == name {
			return d, true
		}
	}
	return Definition{}, false
}

// Options configure Build.
type Options struct {
	// Module is the root of the spear module (the directory of go.mod).
	Module string
	// Out is the output directory; each image's layout goes to Out/Name.
	Out string
	// Platforms to build for (default linux/amd64 and linux/arm64).
	Platforms []ociimage.Platform
	// Repository prefixes the image names in their labels (default
	// DefaultRepository).
	Repository string
	// Version tags the images (default Version).
	Version string
	// Revision is the source revision, for the labels (optional).
	Revision string
	// Created is the images' creation time (default: now).
	Created time.Time
	// Log receives progress lines (optional).
	Log func(format string, args ...any)
}

// DefaultPlatforms are the platforms Build builds when Options names none.
var DefaultPlatforms = []ociimage.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// Result is one built image.
type Result struct {
	Definition Definition
	// Layout is the image's OCI layout directory.
	Layout string
	// Ref is the image's reference: repository/name:version.
	Ref string
	// Index is the descriptor of its image index.
	Index ociimage.Descriptor
	// LayerSizes is each platform's compressed layer size in bytes.
	LayerSizes map[string]int64
}

// Build builds the image def into opts.Out/def.Name.
func Build(ctx context.Context, def Definition, opts Options) (*Result, error) {
	if len(opts.Platforms) == 0 {
		opts.Platforms = DefaultPlatforms
	}
	if opts.Repository == "" {
		opts.Repository = DefaultRepository
	}
	if opts.Version == "" {
		opts.Version = Version
	}
	if opts.Created.IsZero() {
		opts.Created = time.Now()
	}
	if opts.Log == nil {
		opts.Log = func(string, ...any) {}
	}
	created := opts.Created.UTC().Truncate(time.Second)
	ref := opts.Repository + "/" + def.Name + ":" + opts.Version
	labels := map[string]string{
		"org.opencontainers.image.title":       def.Title,
		"org.opencontainers.image.description": def.Description,
		"org.opencontainers.image.version":     opts.Version,
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.url":         Source,
		"org.opencontainers.image.created":     created.Format(time.RFC3339),
	}
	if opts.Revision != "" {
		labels["org.opencontainers.image.revision"] = opts.Revision
	}
	work, err := os.MkdirTemp("", "spear-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	var images []ociimage.Image
	for _, p := range opts.Platforms {
		opts.Log("building %s for %s", def.Package, p)
		bin := filepath.Join(work, p.OS+"-"+p.Architecture)
		if err := goBuild(ctx, opts.Module, def.Package, bin, p, opts.Version); err != nil {
			return nil, err
		}
		if err := CheckStatic(bin); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		images = append(images, ociimage.Image{
			Platform:  p,
			Files:     rootFS(def, data),
			CreatedBy: fmt.Sprintf("spear-image: CGO_ENABLED=0 GOOS=%s GOARCH=%s go build -trimpath %s", p.OS, p.Architecture, def.Package),
			Config: ociimage.RunConfig{
				User:       fmt.Sprintf("%d:%d", UID, GID),
				Env:        []string{"PATH=/usr/local/bin", "HOME=/home/nonroot"},
				Entrypoint: []string{def.Binary},
				Cmd:        def.Cmd,
				WorkingDir: "/",
				Labels:     labels,
			},
		})
	}
	layout := filepath.Join(opts.Out, filepath.FromSlash(def.Name))
	idx, err := ociimage.Write(layout, opts.Version, created, images, labels)
	if err != nil {
		return nil, err
	}
	res := &Result{Definition: def, Layout: layout, Ref: ref, Index: idx, LayerSizes: map[string]int64{}}
	l, err := ociimage.Open(layout)
	if err != nil {
		return nil, err
	}
	for _, p := range opts.Platforms {
		m, _, err := l.Image(opts.Version, p)
		if err != nil {
			return nil, err
		}
		for _, layer := range m.Layers {
			res.LayerSizes[p.String()] += layer.Size
		}
	}
	return res, nil
}

// rootFS is an image's whole filesystem: the binary, a passwd and group
// naming the non-root user, its home, and /tmp (where the manifests mount
// an emptyDir, as the root filesystem is read-only).
func rootFS(def Definition, binary []byte) []ociimage.File {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID)
	return []ociimage.File{
		{Path: def.Binary, Mode: 0o755, Data: binary},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte(passwd)},
		{Path: "/etc/group", Mode: 0o644, Data: []byte(group)},
		{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: UID, GID: GID},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}

// goBuild cross-compiles pkg for p into out: static, without paths of the
// build machine, stripped, and stamped with the version.
func goBuild(ctx context.Context, module, pkg, out string, p ociimage.Platform, version string) error {
	ldflags := "-s -w -X github.com/spear-go/spear/cmd/spearlet/cli.Version=" + version
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags="+ldflags, "-o", out, pkg)
	cmd.Dir = module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s: %w\n%s", pkg, p, err, stderr.Bytes())
	}
	return nil
}

// CheckStatic fails unless the ELF executable at path is statically
// linked: no program interpreter, no shared libraries.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (it has a program interpreter)", path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("%s needs shared libraries: %s", path, strings.Join(libs, ", "))
	}
	return nil
}

// ModuleRoot returns the directory of the main module's go.mod, as the go
// command run in dir finds it.
func ModuleRoot(ctx context.Context, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "env", "GOMOD")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("%s is not inside a Go module", dir)
	}
	return filepath.Dir(gomod), nil
}
