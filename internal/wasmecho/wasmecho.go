// Package wasmecho embeds the example wasm function built from
// examples/wasm-echo, so the agent has a default wasm function and tests
// have a real module without a toolchain step. Rebuild echo.wasm with
// `go generate ./internal/wasmecho` after changing the example or
// sdk/guest.
package wasmecho

import _ "embed"

//go:generate env GOOS=wasip1 GOARCH=wasm go build -trimpath "-ldflags=-s -w" -o echo.wasm ../../examples/wasm-echo

// Module is the compiled module (a WASI preview 1 command). Treat it as
// read-only.
//
//go:embed echo.wasm
var Module []byte
