// Package bench measures Spear against the alternatives a user would
// otherwise pick, side by side in one run: a raw socket ping-pong (the
// physical limit on the machine), grpc-go, and Go channels. It is the code
// behind cmd/spear-bench and the Go benchmarks in this package.
//
// Every comparison sets up ours and its baseline the same way (both
// in-process, the peer on its own goroutine), then times them in rounds,
// alternating which goes first, and reports medians. Speed is always a
// ratio of the two, never a fixed time: the ratio survives a noisy or slow
// machine, a time does not. docs/benchmarks.md describes each comparison.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"
)

// Options select and size a run. The zero value is a full run of every
// comparison.
type Options struct {
	// Quick makes a short smoke run: fewer rounds, shorter batches, fewer
	// idle channels. Its figures are rough.
	Quick bool
	// Run selects the comparisons whose names match; nil runs all.
	Run *regexp.Regexp
	// Rounds is how many interleaved rounds each comparison runs (default
	// 9, or 3 when Quick).
	Rounds int
	// IdleChannels is how many idle channels the memory comparison holds
	// (default 10000, or 200 when Quick).
	IdleChannels int
	// Exe is the binary the memory comparison starts as its instance
	// process; it must call ChildMain when IsChild reports true. Empty
	// means the running binary.
	Exe string
	// MemProfile, when set, is where the memory comparison writes a heap
	// profile of the agent holding its idle channels.
	MemProfile string
}

func (o Options) withDefaults() Options {
	if o.Rounds <= 0 {
		o.Rounds = 9
		if o.Quick {
			o.Rounds = 3
		}
	}
	if o.IdleChannels <= 0 {
		o.IdleChannels = 10000
		if o.Quick {
			o.IdleChannels = 200
		}
	}
	return o
}

// batch is how long one side runs in one round.
func (o Options) batch() time.Duration {
	if o.Quick {
		return 10 * time.Millisecond
	}
	return 100 * time.Millisecond
}

// comparison is one line of the report.
type comparison struct {
	name string
	// throughput comparisons report ops/s as well as time per op.
	throughput bool
	// callers is the number of goroutines sharing the operations (for the
	// calibration's minimum batch); 0 means 1.
	callers int
	// setup builds ours and the baseline; nil for the memory comparison,
	// which runs run instead.
	setup func(ctx context.Context) (*pair, error)
	run   func(ctx context.Context, o Options, p *printer) error
}

// comparisons lists every comparison in report order.
var comparisons = []comparison{
	{name: "unix64", setup: func(ctx context.Context) (*pair, error) { return unixPair(ctx, 64) }},
	{name: "unix64k", setup: func(ctx context.Context) (*pair, error) { return unixPair(ctx, 64<<10) }},
	{name: "grpc64", setup: func(ctx context.Context) (*pair, error) { return grpcPair(ctx, 64) }},
	{name: "grpc64k", setup: func(ctx context.Context) (*pair, error) { return grpcPair(ctx, 64<<10) }},
	{name: "memory64", setup: func(ctx context.Context) (*pair, error) { return memoryPair(ctx, 64) }},
	{name: "wasm64", setup: func(ctx context.Context) (*pair, error) { return wasmPair(ctx, 64) }},
	{name: "concurrent64", throughput: true, callers: concurrentCallers, setup: concurrentPair},
	{name: "unix1m", throughput: true, setup: func(ctx context.Context) (*pair, error) { return unixPair(ctx, 1<<20) }},
	{name: "http64", setup: httpPair(64)},
	{name: "http64k", setup: httpPair(64 << 10)},
	{name: "grpcapi64", setup: grpcAPIPair},
	{name: "python64", setup: foreignPair(python, 64)},
	{name: "typescript64", setup: foreignPair(typescript, 64)},
	{name: "invoke64", setup: invokePair(false)},
	{name: "traced64", setup: invokePair(true)},
	{name: "idle10k", run: runIdle},
	{name: "start", run: runStart},
	{name: "wasmstart", run: runWasmStart},
	{name: "coldstart", run: runColdStart},
	{name: "connections", run: runConnections},
}

// Names lists the comparisons, in the order Run reports them.
func Names() []string {
	names := make([]string, len(comparisons))
	for i, c := range comparisons {
		names[i] = c.name
	}
	return names
}

// Run runs the selected comparisons and writes their lines to w as each
// finishes (docs/benchmarks.md describes the format), after the machine's;
// it returns every figure as a Report. It stops at the first comparison
// that fails.
func Run(ctx context.Context, w io.Writer, o Options) (Report, error) {
	o = o.withDefaults()
	p := &printer{w: w}
	rep := Report{Machine: machine()}
	p.machineLines(rep.Machine)
	done := func(err error) (Report, error) {
		rep.Machine.LoadEnd = loadAverage()
		rep.Figures = p.figures
		return rep, err
	}
	for _, c := range comparisons {
		if o.Run != nil && !o.Run.MatchString(c.name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return done(err)
		}
		var err error
		if c.run != nil {
			err = c.run(ctx, o, p)
		} else {
			err = compare(ctx, o, p, c)
		}
		if err == nil {
			err = p.err
		}
		var skipped *errSkip
		if errors.As(err, &skipped) {
			p.line("skip", c.name, "%s", skipped.reason)
			continue
		}
		if err != nil {
			return done(fmt.Errorf("%s: %w", c.name, err))
		}
	}
	return done(p.err)
}

// compare measures one pair and prints its lines.
func compare(ctx context.Context, o Options, p *printer, c comparison) error {
	pr, err := c.setup(ctx)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer pr.close()
	r, err := measure(pr, o.Rounds, o.batch(), max(c.callers, 1))
	if err != nil {
		return err
	}
	p.line("ratio", c.name, "%.2f", r.ratio)
	if c.throughput {
		p.line("ops", c.name, "%.0f", 1e9/r.ours)
		p.line("ops", c.name+".base", "%.0f", 1e9/r.base)
	}
	p.line("time", c.name, "%.2fµs", r.ours/1e3)
	p.line("time", c.name+".base", "%.2fµs", r.base/1e3)
	return nil
}
