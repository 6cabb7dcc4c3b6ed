// Package deploy holds the manifests that run spearlet on a Kubernetes
// cluster (deploy/kubernetes, described in docs/kubernetes.md), and the
// tests that check them. It has no code to import.
package deploy
