package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Run is the whole main of an instance: it serves h with the connection
// settings from the environment until the agent terminates the instance or
// the process receives SIGTERM or SIGINT, and exits the process with
// status 1 on error. Logs go to stderr, which the runtime captures.
func Run(h HandlerFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	in, err := New(Options{Handler: h, Logger: log})
	if err == nil {
		err = in.Serve(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "spear instance:", err)
		os.Exit(1)
	}
}
