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
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File is a file or directory of an image's filesystem.
type File struct {
	// Path is absolute and slash-separated ("/usr/local/bin/spearlet").
	// Missing parent directories are added, owned by root, mode 0755.
	Path string
	// Mode holds the permission bits, and fs.ModeDir for a directory.
	Mode fs.FileMode
	// UID and GID own the file.
	UID, GID int
	// Data is a regular file's content.
	Data []byte
}

// Image is one platform's image: a filesystem, written as one layer, and
// how to run it.
type Image struct {
	Platform Platform
	Files    []File
	Config   RunConfig
	// CreatedBy says in the image's history how the layer was made.
	CreatedBy string
}

// Write adds images, one per platform, to the OCI image layout at dir
// (created when missing) as an image index tagged tag, replacing what
// the tag named before. created is the images' creation time, and the
// files' modification time; annotations go on the index and on each
// manifest. It returns the descriptor of the index.
func Write(dir, tag string, created time.Time, images []Image, annotations map[string]string) (Descriptor, error) {
	if tag == "" || len(images) == 0 {
		return Descriptor{}, errors.New("ociimage: a tag and at least one image are required")
	}
	created = created.UTC().Truncate(time.Second)
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return Descriptor{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return Descriptor{}, err
	}
	idx := Index{SchemaVersion: 2, MediaType: MediaTypeIndex, Annotations: annotations}
	for _, img := range images {
		d, err := writeImage(dir, created, img, annotations)
		if err != nil {
			return Descriptor{}, fmt.Errorf("ociimage: %s: %w", img.Platform, err)
		}
		idx.Manifests = append(idx.Manifests, d)
	}
	d, err := writeJSON(dir, MediaTypeIndex, idx)
	if err != nil {
		return Descriptor{}, err
	}

	// index.json: keep the other tags, replace this one.
	top := Index{SchemaVersion: 2, MediaType: MediaTypeIndex}
	if b, err := os.ReadFile(filepath.Join(dir, "index.json")); err == nil {
		if err := json.Unmarshal(b, &top); err != nil {
			return Descriptor{}, fmt.Errorf("ociimage: %s/index.json: %w", dir, err)
		}
	}
	top.Manifests = slices.DeleteFunc(top.Manifests, func(m Descriptor) bool { return m.Annotations[AnnotationRefName] == tag })
	tagged := d
	tagged.Annotations = map[string]string{AnnotationRefName: tag}
	top.Manifests = append(top.Manifests, tagged)
	b, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return Descriptor{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), append(b, '\n'), 0o644); err != nil {
		return Descriptor{}, err
	}
	return d, nil
}

func writeImage(dir string, created time.Time, img Image, annotations map[string]string) (Descriptor, error) {
	tarball, err := layerTar(img.Files, created)
	if err != nil {
		return Descriptor{}, err
	}
	diffID := sha256.Sum256(tarball)
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	if err != nil {
		return Descriptor{}, err
	}
	if _, err := zw.Write(tarball); err != nil {
		return Descriptor{}, err
	}
	if err := zw.Close(); err != nil {
		return Descriptor{}, err
	}
	layer, err := writeBlob(dir, MediaTypeLayer, gz.Bytes())
	if err != nil {
		return Descriptor{}, err
	}
	cfg := ImageConfig{
		Created:      created,
		Architecture: img.Platform.Architecture,
		OS:           img.Platform.OS,
		Config:       img.Config,
		RootFS:       RootFS{Type: "layers", DiffIDs: []string{"sha256:" + hex.EncodeToString(diffID[:])}},
		History:      []HistoryEntry{{Created: created, CreatedBy: img.CreatedBy}},
	}
	config, err := writeJSON(dir, MediaTypeConfig, cfg)
	if err != nil {
		return Descriptor{}, err
	}
	m := Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest, Config: config, Layers: []Descriptor{layer}, Annotations: annotations}
	d, err := writeJSON(dir, MediaTypeManifest, m)
	if err != nil {
		return Descriptor{}, err
	}
	p := img.Platform
	d.Platform = &p
	return d, nil
}

// layerTar returns the files as an uncompressed tar, directories first
// and every entry in path order, with their parents.
func layerTar(files []File, mtime time.Time) ([]byte, error) {
	entries := map[string]File{}
	for _, f := range files {
		p := path.Clean(f.Path)
		if !path.IsAbs(p) || p == "/" {
			return nil, fmt.Errorf("file path %q is not absolute", f.Path)
		}
		f.Path = p
		if _, dup := entries[p]; dup {
			return nil, fmt.Errorf("file %s given twice", p)
		}
		entries[p] = f
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if _, ok := entries[dir]; !ok {
				entries[dir] = File{Path: dir, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	paths := slices.Sorted(maps.Keys(entries))
	for _, p := range paths {
		// A file below a regular file cannot exist.
		if dir := path.Dir(p); dir != "/" && !entries[dir].Mode.IsDir() {
			return nil, fmt.Errorf("%s is inside %s, which is not a directory", p, dir)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := entries[p]
		h := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Mode:    int64(f.Mode.Perm()),
			Uid:     f.UID,
			Gid:     f.GID,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if f.Mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000 // /tmp
		}
		if f.Mode.IsDir() {
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeJSON(dir, mediaType string, v any) (Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Descriptor{}, err
	}
	return writeBlob(dir, mediaType, b)
}

// writeBlob stores b under its digest and returns its descriptor.
func writeBlob(dir, mediaType string, b []byte) (Descriptor, error) {
	sum := sha256.Sum256(b)
	d := Descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(b))}
	p := filepath.Join(dir, "blobs", "sha256", hex.EncodeToString(sum[:]))
	if st, err := os.Stat(p); err == nil && st.Size() == d.Size {
		return d, nil // content-addressed: the same bytes are there
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".blob-*")
	if err != nil {
		return Descriptor{}, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return Descriptor{}, err
	}
	if err := tmp.Close(); err != nil {
		return Descriptor{}, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return Descriptor{}, err
	}
	return d, os.Rename(tmp.Name(), p)
}
