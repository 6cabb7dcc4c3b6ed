// Package proto holds the protobuf schema of the protocol's payloads. The
// generated Go code is committed: proto/spearpb (the instance protocol's
// messages), proto/transportpb (the grpc transport's service, apart so that
// the messages do not pull in grpc-go) and proto/agentpb (the spearlet
// API). Regenerate it with `go generate ./proto`; it needs protoc (Debian's
// protobuf-compiler, 3.21.12, which the committed code was made with) and
// runs the plugins at the versions go.mod pins with its tool directives.
// .ci/run checks that the committed code is what this produces.
package proto

//go:generate sh -c "protoc -I . --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=.. --go_opt=module=github.com/spear-go/spear --go-grpc_out=.. --go-grpc_opt=module=github.com/spear-go/spear spear/v1/spear.proto spear/v1/transport.proto spear/v1/agent.proto"
