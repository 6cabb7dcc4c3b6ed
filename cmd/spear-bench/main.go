// Command spear-bench measures Spear side by side with its baselines (a
// raw socket, grpc-go, Go channels) and prints one line per figure:
//
//	ratio NAME=VALUE   our time divided by the baseline's; lower is better
//	ops NAME=VALUE     throughput, operations per second
//	time NAME=VALUE    median time per operation
//	mem NAME=VALUE     KiB (per channel unless the name says otherwise)
//
// NAME.base is the baseline's figure; the first lines ("machine ...")
// record the machine. docs/benchmarks.md explains each comparison and the
// targets. -json writes the figures as one JSON document on stdout (the
// lines go to stderr), and -compare prints the change of every figure
// between two such documents, flagging regressions over 10 %.
//
//	go run ./cmd/spear-bench [-quick] [-run REGEXP] [-rounds N] [-channels N] [-memprofile FILE] [-json]
//	go run ./cmd/spear-bench -compare old.json new.json
package main

import (
	"context"
	"encoding/json"
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
	asJSON := flag.Bool("json", false, "write the figures as JSON on stdout (the lines go to stderr)")
	compare := flag.Bool("compare", false, "compare two -json reports given as arguments, old then new; exit 1 on a regression over 10 %")
	flag.Parse()
	if *compare {
		os.Exit(compareReports(flag.Args()))
	}
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
	lines := os.Stdout
	if *asJSON {
		lines = os.Stderr
	}
	rep, err := bench.Run(ctx, lines, o)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(rep); err == nil {
			err = jerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "spear-bench:", err)
		os.Exit(1)
	}
}

// compareReports is -compare: it returns the exit status.
func compareReports(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "spear-bench: -compare wants two files: old.json new.json")
		return 2
	}
	old, err := bench.ReadReport(args[0])
	if err == nil {
		var cur bench.Report
		if cur, err = bench.ReadReport(args[1]); err == nil {
			var flagged int
			if flagged, err = bench.Compare(os.Stdout, old, cur); err == nil && flagged > 0 {
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "spear-bench:", err)
		return 2
	}
	return 0
}
