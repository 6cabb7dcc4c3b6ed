// Command spear-bench measures Spear side by side with its baselines (a
// raw socket, grpc-go, Go channels) and prints one line per figure:
//
//	ratio NAME=VALUE   our time divided by the baseline's; lower is better
//	ops NAME=VALUE     throughput, operations per second
//	time NAME=VALUE    median time per operation
//	mem NAME=VALUE     KiB (per channel unless the name says otherwise)
//
// NAME.base is the baseline's figure. docs/benchmarks.md explains each
// comparison and the targets.
//
//	go run ./cmd/spear-bench [-quick] [-run REGEXP] [-rounds N] [-channels N] [-memprofile FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strings"

	"github.com/spear-go/spear/bench"
)

func main() {
	if bench.IsChild() {
		os.Exit(bench.ChildMain())
	}
	var o bench.Options
	flag.BoolVar(&o.Quick, "quick", false, "short smoke run with rough figures")
	run := flag.String("run", "", "run only the comparisons matching this regexp (of: "+strings.Join(bench.Names(), ", ")+")")
	flag.IntVar(&o.Rounds, "rounds", 0, "interleaved rounds per comparison (default 9, 3 with -quick)")
	flag.IntVar(&o.IdleChannels, "channels", 0, "idle channels in the memory comparison (default 5000, 200 with -quick)")
	flag.StringVar(&o.MemProfile, "memprofile", "", "write a heap profile of the agent holding its idle channels to this file")
	flag.Parse()
	if *run != "" {
		re, err := regexp.Compile(*run)
		if err != nil {
			fmt.Fprintln(os.Stderr, "spear-bench: -run:", err)
			os.Exit(2)
		}
		o.Run = re
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := bench.Run(ctx, os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "spear-bench:", err)
		os.Exit(1)
	}
}
