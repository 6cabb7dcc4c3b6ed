#!/usr/bin/env bash
# Installs what `go generate ./proto` needs: protoc (Debian's
# protobuf-compiler) and the Go plugins at the versions the committed code
# was generated with. Only needed to change proto/spear/v1/spear.proto.
set -euo pipefail
if ! command -v protoc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq protobuf-compiler
fi
go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
