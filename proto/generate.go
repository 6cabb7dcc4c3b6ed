// Package proto holds the protobuf schema of the protocol's payloads. The
// generated Go code lives in proto/spearpb (the instance protocol) and
// proto/agentpb (the spearlet API) and is committed; regenerate it
// with `go generate ./proto` (needs protoc, and the plugins that
// scripts/install-protoc-plugins.sh installs).
package proto

//go:generate protoc -I . --go_out=.. --go_opt=module=github.com/spear-go/spear --go-grpc_out=.. --go-grpc_opt=module=github.com/spear-go/spear spear/v1/spear.proto
//go:generate protoc -I . --go_out=.. --go_opt=module=github.com/spear-go/spear --go-grpc_out=.. --go-grpc_opt=module=github.com/spear-go/spear spear/v1/agent.proto
