#!/usr/bin/env bash
# Regenerates the committed generated code and fails if it differs from what
# is committed: the protobuf code of proto/ (protoc from Debian's
# protobuf-compiler, installed here when missing; the Go plugins at the
# versions go.mod pins as tools) and the example wasm module that
# internal/wasmecho embeds.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
  $sudo apt-get update -qq && $sudo apt-get install -y -qq protobuf-compiler >/dev/null
fi
go generate ./proto ./internal/wasmecho
if [ -n "$(git status --porcelain -- proto internal/wasmecho)" ]; then
  git status --short -- proto internal/wasmecho
  git diff --stat -- proto internal/wasmecho
  echo "generated code is not current: run go generate ./proto ./internal/wasmecho and commit" >&2
  exit 1
fi
