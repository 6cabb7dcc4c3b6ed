//go:build wasip1

// Command wasm-echo is the example wasm function: a WASI preview 1 module
// built on sdk/guest, embedded in the agent (internal/wasmecho) as its
// default wasm function and used by the tests of runtime/wasm. Build it
// with `go generate ./internal/wasmecho`.
//
// Methods:
//
//   - "" and "echo" answer "<instance id>|<payload>";
//   - "count" answers how many times it was called in this module
//     instance (1, 2, ...), showing that instances share no state;
//   - "stream" writes the payload back as three chunks;
//   - "fail" returns an error with code NOT_FOUND and the payload as message;
//   - "trap" executes the wasm unreachable instruction;
//   - "panic" panics, so the Go runtime exits with status 2;
//   - "loop" spins for ever;
//   - "alloc" allocates, and keeps, 1 MiB blocks until memory runs out.
package main

import (
	"context"
	"os"
	"strconv"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/sdk/guest"
)

// unreachable executes the wasm unreachable instruction (trap_wasip1_wasm.s).
func unreachable()

var (
	calls int
	heap  [][]byte
	sink  int
)

func main() {
	id := os.Getenv(spear.EnvInstanceID)
	guest.Run(func(ctx context.Context, req *guest.Request) ([]byte, error) {
		switch req.Method {
		case "", "echo":
			return []byte(id + "|" + string(req.Payload)), nil
		case "count":
			calls++
			return strconv.AppendInt(nil, int64(calls), 10), nil
		case "stream":
			for range 3 {
				if _, err := req.Write(req.Payload); err != nil {
					return nil, err
				}
			}
			return nil, nil
		case "fail":
			return nil, guest.Error(spear.CodeNotFound, string(req.Payload))
		case "trap":
			unreachable()
		case "panic":
			panic("wasm-echo: asked to panic")
		case "loop":
			for i := 0; ; i++ {
				sink = i
			}
		case "alloc":
			for {
				b := make([]byte, 1<<20)
				for i := 0; i < len(b); i += 4096 {
					b[i] = 1 // touch every page
				}
				heap = append(heap, b)
			}
		}
		return nil, guest.Error(spear.CodeNotFound, "no method "+strconv.Quote(req.Method))
	})
}
