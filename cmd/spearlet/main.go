// Command spearlet is the Spear node agent: it runs functions in runtime
// instances (child processes, wasm modules, Kubernetes pods) and serves
// the API and CLI that invoke them. See docs/agent.md.
//
//	spearlet serve                      # the embedded default config
//	spearlet invoke echo hello
//	spearlet instances
//
// Its exit status is 0 on success, 1 on an error, 2 on wrong arguments, 3
// when the daemon cannot be reached, and 4 when an invocation failed.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spear-go/spear/cmd/spearlet/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], stop, os.Stderr)
	stop()
	os.Exit(code)
}
