// Package ociimage writes and reads container images as OCI image layouts
// (github.com/opencontainers/image-spec, layout 1.0.0): an oci-layout
// file, an index.json, and content-addressed blobs. It is what
// cmd/spear-image builds the spearlet and example images with, without a
// container daemon, and what the tests read them back with.
//
// The images this package writes are the simple kind a static Go binary
// needs: one layer per image, one image per platform, gathered under one
// image index that index.json names by its tag. Everything is
// deterministic: files, timestamps and compression depend only on the
// input, so the same input gives the same digests.
//
// It is written with the standard library: the format is five kinds of
// JSON document and a gzipped tar, and a library such as
// go-containerregistry would bring a registry client and its
// dependencies to a module that needs neither.
package ociimage

import (
	"time"
)

// Media types of the documents and blobs (image-spec v1.1).
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// AnnotationRefName is the annotation of index.json that names (tags) an
// image index, as "oci:DIR:TAG" references and registry clients read it.
const AnnotationRefName = "org.opencontainers.image.ref.name"

// Descriptor points to a blob (image-spec descriptor.md).
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *Platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Platform is the operating system and architecture an image runs on.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
}

// String returns "os/architecture".
func (p Platform) String() string { return p.OS + "/" + p.Architecture }

// Index is an image index (image-spec image-index.md); index.json is one.
type Index struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Manifests     []Descriptor      `json:"manifests"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// Manifest is an image manifest (image-spec manifest.md).
type Manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Config        Descriptor        `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// ImageConfig is an image's configuration document (image-spec
// config.md): what the container runtime needs to run it.
type ImageConfig struct {
	Created      time.Time      `json:"created"`
	Architecture string         `json:"architecture"`
	OS           string         `json:"os"`
	Config       RunConfig      `json:"config"`
	RootFS       RootFS         `json:"rootfs"`
	History      []HistoryEntry `json:"history,omitempty"`
}

// RunConfig is how a container of the image runs.
type RunConfig struct {
	User       string            `json:"User,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Cmd        []string          `json:"Cmd,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

// RootFS lists the digests of the uncompressed layers.
type RootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

// HistoryEntry says how a layer was made.
type HistoryEntry struct {
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by,omitempty"`
	Comment   string    `json:"comment,omitempty"`
}
