package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Layout is an OCI image layout on disk, opened for reading. Every blob
// it reads is checked against its digest and size.
type Layout struct {
	dir string
}

// Open opens the layout at dir.
func Open(dir string) (*Layout, error) {
	b, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if err != nil {
		return nil, fmt.Errorf("ociimage: %s is not an OCI image layout: %w", dir, err)
	}
	var v struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Version != "1.0.0" {
		return nil, fmt.Errorf("ociimage: %s/oci-layout: want imageLayoutVersion 1.0.0, got %s", dir, b)
	}
	return &Layout{dir: dir}, nil
}

// Resolve returns the descriptor that index.json tags tag.
func (l *Layout) Resolve(tag string) (Descriptor, error) {
	var top Index
	b, err := os.ReadFile(filepath.Join(l.dir, "index.json"))
	if err != nil {
		return Descriptor{}, err
	}
	if err := json.Unmarshal(b, &top); err != nil {
		return Descriptor{}, fmt.Errorf("ociimage: index.json: %w", err)
	}
	for _, d := range top.Manifests {
		if d.Annotations[AnnotationRefName] == tag {
			return d, nil
		}
	}
	return Descriptor{}, fmt.Errorf("ociimage: %s has no image tagged %q", l.dir, tag)
}

// Blob returns the content d points to, after checking it matches d.
func (l *Layout) Blob(d Descriptor) ([]byte, error) {
	hexDigest, ok := strings.CutPrefix(d.Digest, "sha256:")
	if !ok || len(hexDigest) != 64 || strings.ContainsAny(hexDigest, "/\\.") {
		return nil, fmt.Errorf("ociimage: unsupported digest %q", d.Digest)
	}
	b, err := os.ReadFile(filepath.Join(l.dir, "blobs", "sha256", hexDigest))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != hexDigest || int64(len(b)) != d.Size {
		return nil, fmt.Errorf("ociimage: blob %s does not match its descriptor", d.Digest)
	}
	return b, nil
}

func (l *Layout) blobJSON(d Descriptor, mediaType string, v any) error {
	if d.MediaType != mediaType {
		return fmt.Errorf("ociimage: %s is a %s, want a %s", d.Digest, d.MediaType, mediaType)
	}
	b, err := l.Blob(d)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Index reads the image index d points to.
func (l *Layout) Index(d Descriptor) (*Index, error) {
	var idx Index
	return &idx, l.blobJSON(d, MediaTypeIndex, &idx)
}

// Manifest reads the image manifest d points to.
func (l *Layout) Manifest(d Descriptor) (*Manifest, error) {
	var m Manifest
	return &m, l.blobJSON(d, MediaTypeManifest, &m)
}

// Config reads the image configuration m points to.
func (l *Layout) Config(m *Manifest) (*ImageConfig, error) {
	var c ImageConfig
	return &c, l.blobJSON(m.Config, MediaTypeConfig, &c)
}

// Image returns the manifest and configuration of the image for platform
// p under tag.
func (l *Layout) Image(tag string, p Platform) (*Manifest, *ImageConfig, error) {
	d, err := l.Resolve(tag)
	if err != nil {
		return nil, nil, err
	}
	idx, err := l.Index(d)
	if err != nil {
		return nil, nil, err
	}
	for _, md := range idx.Manifests {
		if md.Platform == nil || *md.Platform != p {
			continue
		}
		m, err := l.Manifest(md)
		if err != nil {
			return nil, nil, err
		}
		c, err := l.Config(m)
		if err != nil {
			return nil, nil, err
		}
		return m, c, nil
	}
	return nil, nil, fmt.Errorf("ociimage: %s:%s has no image for %s", l.dir, tag, p)
}

// Extract unpacks m's layers into dst, as a container runtime would make
// the image's root filesystem (owners are not kept). Entries that would
// land outside dst, links and device files are refused.
func (l *Layout) Extract(m *Manifest, dst string) error {
	for _, d := range m.Layers {
		if d.MediaType != MediaTypeLayer {
			return fmt.Errorf("ociimage: layer %s is a %s, want a %s", d.Digest, d.MediaType, MediaTypeLayer)
		}
		b, err := l.Blob(d)
		if err != nil {
			return err
		}
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("ociimage: layer %s: %w", d.Digest, err)
		}
		if err := untar(tar.NewReader(zr), dst, maxExtract); err != nil {
			return fmt.Errorf("ociimage: layer %s: %w", d.Digest, err)
		}
	}
	return nil
}

// maxExtract bounds what Extract writes for one layer: far above any of
// Spear's images, and a stop to a layer that expands without end (a tar
// may declare sparse files of any size, read back as zeros).
const maxExtract = 1 << 30

// untar writes the entries of tr under dst, at most limit bytes of file
// content in all.
func untar(tr *tar.Reader, dst string, limit int64) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if !filepath.IsLocal(name) {
			return fmt.Errorf("entry %q is outside the image root", h.Name)
		}
		target := filepath.Join(dst, name)
		mode := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			if h.Size > limit {
				f.Close()
				return fmt.Errorf("entry %q: %d bytes, over the %d left to extract", h.Name, h.Size, limit)
			}
			n, err := io.Copy(f, io.LimitReader(tr, limit))
			limit -= n
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: type %q is not supported", h.Name, h.Typeflag)
		}
	}
}
