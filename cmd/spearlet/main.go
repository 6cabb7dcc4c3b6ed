// Command spearlet is the Spear node agent: it runs functions in runtime
// instances (child processes, wasm modules, Kubernetes pods) and serves
// the API and CLI that invoke them. See docs/agent.md.
//
//	spearlet serve                      # the embedded default config
//	spearlet invoke echo hello
//	spearlet instances
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spear-go/spear/cmd/spearlet/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cli.Run(ctx, os.Args[1:], stop); err != nil {
		fmt.Fprintln(os.Stderr, "spearlet:", err)
		os.Exit(1)
	}
}
