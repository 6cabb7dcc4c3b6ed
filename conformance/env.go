package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/conformance/contract"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/wire"
)

// env is what one check works with: the target's launcher and the
// transport under test. It remembers what the check started, so that
// cleanup can stop it whatever the check's outcome.
type env struct {
	opts      *Options
	l         launcher
	transport channel.Type

	insts []runtime.Instance
	procs []*rawProc
}

// start starts an instance as the agent does, on the transport under
// test; tweak may adjust its channel's configuration.
func (e *env) start(ctx context.Context, tweak func(*channel.Config)) (*subject, error) {
	cfg := channel.Config{Type: e.transport, MaxPayload: e.opts.MaxPayload}
	if tweak != nil {
		tweak(&cfg)
	}
	inst, err := e.l.start(ctx, newID(e.l.runtimeType()), cfg)
	if err != nil {
		return nil, fmt.Errorf("the instance did not start: %w", err)
	}
	e.insts = append(e.insts, inst)
	return &subject{e: e, inst: inst, ch: inst.Channel()}, nil
}

// launch starts the instance against the runner's own agent (raw.go),
// with its secret handed over as h says.
func (e *env) launch(ctx context.Context, h handoff) (*rawProc, error) {
	p, err := e.l.launch(ctx, e.transport, newID(e.l.runtimeType()), h)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p)
	return p, nil
}

// cleanup stops everything the check started.
func (e *env) cleanup() {
	for _, inst := range e.insts {
		ctx, cancel := context.WithTimeout(context.Background(), 2*e.opts.Patience)
		_ = e.l.stop(ctx, inst)
		cancel()
	}
	for _, p := range e.procs {
		p.kill()
	}
}

// lastOutput quotes the last lines the check's latest instance wrote, to
// explain a failure.
func (e *env) lastOutput() string {
	var lines []string
	switch {
	case len(e.procs) > 0:
		lines = e.procs[len(e.procs)-1].out.last(outputLines)
	case len(e.insts) > 0:
		lines = e.insts[len(e.insts)-1].Logs(outputLines)
	}
	if len(lines) == 0 {
		return ""
	}
	return fmt.Sprintf("%q", lines)
}

// outputLines is how many of an instance's last output lines a failure
// quotes.
const outputLines = 5

// newID returns a fresh instance id of runtime type rt.
func newID(rt spear.RuntimeType) spear.InstanceID {
	return spear.InstanceID{Runtime: rt, Name: "conformance-" + randomHex(4)}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// subject is an instance started as the agent does.
type subject struct {
	e    *env
	inst runtime.Instance
	ch   *channel.Channel
}

// call runs one method of the contract.
func (s *subject) call(ctx context.Context, method string, payload []byte) ([]byte, error) {
	if err := s.e.l.ready(ctx, s.inst); err != nil {
		return nil, err
	}
	return channel.Execute(ctx, s.ch, channel.Invocation{Method: method, Payload: payload})
}

// split waits until the instance is ready and reports whether it
// announced the split execute layout, which the agent then uses for its
// requests and the instance for its answers.
func (s *subject) split(ctx context.Context) (bool, error) {
	if err := s.e.l.ready(ctx, s.inst); err != nil {
		return false, err
	}
	return slices.Contains(s.ch.Features(), wire.FeatureSplit), nil
}

// stopped waits, within the patience, for evidence that a handler the
// check interrupted (cancelled, or past its deadline) stopped: the
// contract's interrupted count went up, or the runtime replaced the
// module that ran it (wasm guests cannot see CANCEL; their runtime kills
// them instead).
func (s *subject) stopped(ctx context.Context) (string, error) {
	pctx, cancel := context.WithTimeout(ctx, s.e.opts.Patience)
	defer cancel()
	last := "no answer"
	for {
		if n := s.e.l.resets(s.inst); n > 0 {
			return "the runtime replaced the module that ran it", nil
		}
		out, err := s.call(pctx, contract.MethodInterrupted, nil)
		switch {
		case err == nil && string(out) != "0":
			return fmt.Sprintf("the handler stopped (interrupted answers %s)", out), nil
		case err == nil:
			last = "interrupted answers 0"
		case pctx.Err() == nil:
			last = err.Error()
		}
		select {
		case <-pctx.Done():
			return "", fmt.Errorf("no sign within %s that the handler stopped (%s)", s.e.opts.Patience, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// codeOf returns the wire code of a remote error, and false for any
// other error.
func codeOf(err error) (spear.Code, bool) {
	var re *spear.RemoteError
	if errors.As(err, &re) {
		return re.Code, true
	}
	return 0, false
}

// wantCode checks that err is a remote error with code want.
func wantCode(err error, want spear.Code, what string) error {
	if err == nil {
		return fmt.Errorf("%s succeeded; want an ERROR %s", what, want)
	}
	if code, ok := codeOf(err); !ok || code != want {
		return fmt.Errorf("%s: want an ERROR %s, got: %w", what, want, err)
	}
	return nil
}

// quote shortens b for a message.
func quote(b []byte) string {
	const max = 64
	if len(b) > max {
		return fmt.Sprintf("%q... (%d bytes)", b[:max], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// tail keeps the last lines of an instance's output.
type tail struct {
	mu    sync.Mutex
	lines []string
}

// tailLines is how many lines a tail keeps.
const tailLines = 20

// add keeps line, dropping the oldest beyond tailLines.
func (t *tail) add(line string) {
	if len(line) > 300 {
		line = line[:300] + "..."
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, strings.TrimRight(line, "\r"))
	if len(t.lines) > tailLines {
		t.lines = slices.Delete(t.lines, 0, len(t.lines)-tailLines)
	}
}

// last returns up to n of the latest lines, oldest first.
func (t *tail) last(n int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.lines[max(0, len(t.lines)-n):])
}

// errText is err's message, or "no error" for nil, for failure messages
// that report what came back in place of what was wanted.
func errText(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
