// Package conformance checks that an instance implementation speaks the
// Spear protocol (docs/protocol.md) the way the agent needs: it starts the
// instance under test, on each transport it claims, and drives it through
// a list of checks, reporting pass, fail or skip for each. It is what
// `spearlet conformance` runs, and how the Go, Python and TypeScript SDKs
// and the wasm guest library are checked in CI.
//
// Most checks run the instance as the agent does: a channel.Factory makes
// its channel, and the process runtime (or the wasm runtime, for a wasm
// module) starts it. Checks that need an agent that misbehaves on purpose
// (a wrong proof, a dropped connection) run it against the runner's own
// minimal agent on the same transport instead.
//
// The instance must serve the conformance handler contract (package
// contract, docs/conformance.md): a few methods that let the agent's side
// make it stream, wait to be cancelled, sleep past a deadline or answer a
// given number of bytes.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/chantls"
	"github.com/spear-go/spear/wire"
)

// Status is a check's outcome.
type Status string

// The outcomes.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip" // does not apply to this target or transport
)

// Defaults for zero Options fields.
const (
	DefaultTimeout  = 60 * time.Second
	DefaultPatience = 5 * time.Second
)

// Options configure a run. Exactly one of Command and Wasm is set.
type Options struct {
	// Command starts a process instance: the program, then its arguments.
	Command []string
	// Dir is the process's working directory; Env is added to the
	// environment it inherits from the runner.
	Dir string
	Env []string
	// Wasm is a WASI preview 1 module to run through the wasm runtime
	// instead of a process.
	Wasm []byte

	// Transports are the transports a process instance is checked on
	// (default unix and tcp). A wasm module is always checked on memory
	// (and its standard streams, for the checks that need a hostile
	// agent).
	Transports []channel.Type
	// TLS runs the network transports (tcp, grpc) over TLS in this mode
	// (chantls.Server or chantls.Mutual; default none), with a certificate the
	// runner generates: the instance must check it by the pin it is given
	// and, in mutual mode, present the certificate issued for it.
	TLS chantls.Mode
	// MaxPayload is the payload limit the agent announces (default and
	// at most wire.DefaultMaxPayload, the SDKs' own receive limit).
	MaxPayload uint32
	// Timeout bounds each check (default DefaultTimeout).
	Timeout time.Duration
	// Patience is how long to wait for something the instance should do
	// promptly, such as closing a connection or noticing a cancel
	// (default DefaultPatience).
	Patience time.Duration
	// Only, when set, names the only checks to run; Skip names checks not
	// to run. Unknown names are an error.
	Only, Skip []string
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
	// Progress, when set, is called with each result as it is decided.
	Progress func(Result)
}

// Result is the outcome of one check on one transport.
type Result struct {
	Transport string        `json:"transport"`
	Check     string        `json:"check"`
	Status    Status        `json:"status"`
	Detail    string        `json:"detail,omitempty"`
	Duration  time.Duration `json:"duration_ns"`
}

// Report is the outcome of a run.
type Report struct {
	Target     string   `json:"target"`
	Transports []string `json:"transports"`
	Results    []Result `json:"results"`
	Passed     int      `json:"passed"`
	Failed     int      `json:"failed"`
	Skipped    int      `json:"skipped"`
}

// OK reports whether no check failed.
func (r *Report) OK() bool { return r.Failed == 0 }

// Failures returns the names of the checks that failed on any transport,
// each once, in the order of Checks.
func (r *Report) Failures() []string {
	var out []string
	for _, c := range checks {
		for _, res := range r.Results {
			if res.Check == c.name && res.Status == Fail {
				out = append(out, c.name)
				break
			}
		}
	}
	return out
}

// CheckInfo describes a check.
type CheckInfo struct {
	Name string `json:"name"`
	Doc  string `json:"doc"`
}

// Checks lists the checks, in the order they run.
func Checks() []CheckInfo {
	out := make([]CheckInfo, len(checks))
	for i, c := range checks {
		out[i] = CheckInfo{Name: c.name, Doc: c.doc}
	}
	return out
}

// Run runs the selected checks against the target on every transport and
// returns the report. The error is about the run itself (bad options, a
// runtime that could not be set up), never about the instance: its
// failures are in the report.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	selected, err := selectChecks(opts.Only, opts.Skip)
	if err != nil {
		return nil, err
	}
	l, err := newLauncher(&opts)
	if err != nil {
		return nil, err
	}
	defer l.close()
	rep := &Report{Target: l.describe()}
	for _, t := range l.transports() {
		rep.Transports = append(rep.Transports, string(t))
	}
	for _, t := range l.transports() {
		for _, c := range selected {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			res := runCheck(ctx, &opts, l, t, c)
			rep.Results = append(rep.Results, res)
			switch res.Status {
			case Pass:
				rep.Passed++
			case Fail:
				rep.Failed++
			default:
				rep.Skipped++
			}
			if opts.Progress != nil {
				opts.Progress(res)
			}
		}
	}
	return rep, nil
}

func (o *Options) normalize() error {
	switch {
	case len(o.Command) == 0 && len(o.Wasm) == 0:
		return errors.New("conformance: nothing to check: give a command or a wasm module")
	case len(o.Command) > 0 && len(o.Wasm) > 0:
		return errors.New("conformance: give a command or a wasm module, not both")
	case o.MaxPayload > wire.DefaultMaxPayload:
		return fmt.Errorf("conformance: the payload limit is at most %d bytes (the SDKs' own receive limit)", wire.DefaultMaxPayload)
	case o.MaxPayload != 0 && o.MaxPayload < 1024:
		return errors.New("conformance: the payload limit must be at least 1024 bytes")
	}
	if len(o.Transports) == 0 {
		o.Transports = []channel.Type{channel.Unix, channel.TCP}
	}
	for _, t := range o.Transports {
		if t == channel.Memory {
			return errors.New("conformance: memory is for wasm modules, which are always checked on it; name unix, tcp or grpc")
		}
		if _, err := channel.ParseType(string(t)); err != nil {
			return err
		}
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = wire.DefaultMaxPayload
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Patience <= 0 {
		o.Patience = DefaultPatience
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// selectChecks applies Only and Skip.
func selectChecks(only, skip []string) ([]check, error) {
	for _, name := range slices.Concat(only, skip) {
		if !slices.ContainsFunc(checks, func(c check) bool { return c.name == name }) {
			names := make([]string, len(checks))
			for i, c := range checks {
				names[i] = c.name
			}
			return nil, fmt.Errorf("conformance: no check %q (have %s)", name, strings.Join(names, ", "))
		}
	}
	var out []check
	for _, c := range checks {
		if (len(only) == 0 || slices.Contains(only, c.name)) && !slices.Contains(skip, c.name) {
			out = append(out, c)
		}
	}
	return out, nil
}

// check is one conformance check. run returns a detail for the report, or
// an error: a *skipError to skip, anything else fails the check.
type check struct {
	name string
	doc  string
	run  func(ctx context.Context, e *env) (string, error)
}

// skipError marks a check that does not apply.
type skipError struct{ reason string }

func (e *skipError) Error() string { return e.reason }

func skip(reason string) error { return &skipError{reason: reason} }

// runCheck runs c in a fresh env, so that one check's failure cannot
// spill into the next, and cleans up what the check started.
func runCheck(ctx context.Context, opts *Options, l launcher, t channel.Type, c check) Result {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	e := &env{opts: opts, l: l, transport: t}
	detail, err := c.run(cctx, e)
	cancel()
	e.cleanup()
	res := Result{Transport: string(t), Check: c.name, Status: Pass, Detail: detail, Duration: time.Since(start)}
	var sk *skipError
	switch {
	case errors.As(err, &sk):
		res.Status, res.Detail = Skip, sk.reason
	case err != nil:
		res.Status, res.Detail = Fail, err.Error()
		if out := e.lastOutput(); out != "" {
			res.Detail += "; instance output: " + out
		}
	}
	return res
}

// checks are all the checks, in the order they run.
var checks = []check{
	{"handshake", "the instance connects, proves its secret and serves a request", checkHandshake},
	{"bad-agent-proof", "the instance refuses an agent that cannot prove it knows the secret, and serves it nothing", checkBadAgentProof},
	{"secret-handoff", "the secret is read from SPEAR_SECRET_FD (then closed), SPEAR_SECRET_FILE or SPEAR_SECRET, in that order of preference", checkSecretHandoff},
	{"heartbeat-echo", "a probe is answered with HEARTBEAT|ACK echoing its request id and payload", checkHeartbeatEcho},
	{"heartbeat-busy", "probes are answered while a handler is busy, so a long request does not look like a dead instance", checkHeartbeatBusy},
	{"concurrency", "concurrent requests are each answered by their own id", checkConcurrency},
	{"streaming", "a streamed request gets its chunks in order, then END; a unary call gets them gathered", checkStreaming},
	{"cancel", "CANCEL reaches the handler, which stops", checkCancel},
	{"deadline", "a request past its timeout_ms is answered DEADLINE_EXCEEDED and its handler stops", checkDeadline},
	{"payload-limit", "a request and an answer of exactly the announced payload limit go through", checkPayloadLimit},
	{"payload-over-limit", "an answer over the announced limit is refused with TOO_LARGE, and the connection goes on", checkPayloadOverLimit},
	{"unknown-method", "an unknown method is answered NOT_FOUND", checkUnknownMethod},
	{"signals", "pause refuses requests with UNAVAILABLE until resume; an unknown custom signal is NOT_FOUND", checkSignals},
	{"terminate", "terminate: acknowledged, running requests finish, new ones are refused, the instance exits by itself with status 0", checkTerminate},
	{"sigterm", "on SIGTERM the instance closes its connection and exits with status 0", checkSigterm},
	{"reconnect", "when the agent closes the connection (abruptly, then with CLOSE), the instance reconnects and serves again", checkReconnect},
}
