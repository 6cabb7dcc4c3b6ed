#!/usr/bin/env bash
# Builds the control plane of the Kubernetes test tier: kube-apiserver (from
# k8s.io/kubernetes, at the release matching the client-go in go.mod) and
# etcd (go.etcd.io/etcd/server/v3, at the version that release uses). Both
# come from the separate module in scripts/kube, so the main go.mod never
# requires k8s.io/kubernetes.
#
# The binaries go to a cache directory keyed by that module's go.mod and
# go.sum, this script and the Go version, and the script does nothing when they are
# there already. It prints the directory on stdout (progress goes to
# stderr); point SPEAR_KUBE_BIN_DIR at it, or leave it unset: the tests
# look in the same default place.
#
#   scripts/kube-build.sh            # build if needed, print the directory
#   SPEAR_KUBE_BIN_DIR=/some/dir scripts/kube-build.sh
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
mod="$(cd "$(dirname "$0")/kube" && pwd)"
cd "$mod"

k8s_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
etcd_version="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
stamp="$( (cat go.mod go.sum "$self"; go version) | sha256sum | cut -c1-16)"
dir="${SPEAR_KUBE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spear/kube/$k8s_version}"

if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" && "$(cat "$dir/stamp" 2>/dev/null)" == "$stamp" ]]; then
	echo "kube-build: kube-apiserver $k8s_version and etcd $etcd_version are built in $dir" >&2
	echo "$dir"
	exit 0
fi

echo "kube-build: building kube-apiserver $k8s_version and etcd $etcd_version into $dir" >&2
start=$SECONDS
mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# One go build for both, so their shared packages compile once and the
# compiler keeps every core busy. Static, without the race detector or
# debug information: the servers are fixtures, not code under test.
# The version stamps are what the kubernetes release build sets, so that
# /version reports the release.
minor="${k8s_version#v1.}"
minor="${minor%%.*}"
v=k8s.io/component-base/version
ldflags="-s -w -X $v.gitVersion=$k8s_version -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$tmp/" \
	k8s.io/kubernetes/cmd/kube-apiserver go.etcd.io/etcd/server/v3
# The etcd main package sits at its module's root, so go names it after
# the last element of its path that is not a major version.
mv "$tmp/server" "$tmp/etcd"
mv "$tmp/kube-apiserver" "$tmp/etcd" "$dir/"
echo "$stamp" >"$dir/stamp"
echo "kube-build: done in $((SECONDS - start))s" >&2
echo "$dir"
