package wasm

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// incarnation is one module instance of an Instance, bridged to the
// channel by its own memory connection. See the package comment for its
// goroutines.
type incarnation struct {
	inst *Instance
	conn transport.Conn // to the channel; authenticated by the guest
	in   *inbox         // the guest's stdin
	outR *io.PipeReader // the guest's stdout, read by the guest pump
	outW *io.PipeWriter
	mem  *memoryLimit
	ctx  context.Context // the module's; cancelled to kill it
	kill context.CancelFunc

	modDone   chan struct{} // closed when the module has ended
	modErr    error         // why it ended; read after modDone
	guestDone chan struct{} // closed when the guest pump has ended
	pumps     sync.WaitGroup
	gone      <-chan struct{} // the channel's Disconnected for conn, once bound
}

func newIncarnation(inst *Instance, conn transport.Conn) *incarnation {
	run := &incarnation{
		inst:      inst,
		conn:      conn,
		in:        newInbox(),
		mem:       &memoryLimit{limit: inst.limit},
		modDone:   make(chan struct{}),
		guestDone: make(chan struct{}),
	}
	run.outR, run.outW = io.Pipe()
	var cancel context.CancelFunc
	run.ctx, cancel = context.WithCancel(inst.ctx)
	run.kill = func() {
		cancel()
		// The module may be blocked in a host call on its stdin or
		// stdout, where cancellation does not reach; closing them does.
		run.in.stop()
		run.outR.CloseWithError(errKilled)
		<-run.modDone
	}
	return run
}

var errKilled = errors.New("wasm: module instance killed")

func (run *incarnation) start() {
	run.pumps.Add(2)
	go run.pumpAgent()
	go run.pumpGuest()
	go run.runModule()
}

// settle lets the output of a module that ended by itself reach the
// channel before the inbox stops: its last answer (the acknowledgement of
// a terminate signal, say) is in the guest pump's hands.
func (run *incarnation) settle() {
	select {
	case <-run.modDone:
		<-run.guestDone
	default:
	}
}

// close kills the module if it still runs, closes the connection and
// waits for the pumps.
func (run *incarnation) close() {
	run.kill()
	run.conn.Close()
	run.pumps.Wait()
	run.inst.logs.flush()
}

func (run *incarnation) runModule() {
	inst := run.inst
	cfg := wazero.NewModuleConfig().
		WithName(""). // anonymous: many instances of one module coexist
		WithArgs(inst.args...).
		WithStdin(run.in).
		WithStdout(run.outW).
		WithStderr(inst.logs).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(run.nanosleep).
		WithRandSource(rand.Reader)
	for _, kv := range inst.env {
		k, v, _ := strings.Cut(kv, "=")
		cfg = cfg.WithEnv(k, v)
	}
	ctx := experimental.WithMemoryAllocator(context.WithValue(run.ctx, incarnationKey{}, run), run.mem)
	mod, err := inst.rt.engine.InstantiateModule(ctx, inst.mod.compiled, cfg)
	if mod != nil {
		_ = mod.Close(context.Background())
	}
	run.modErr = err
	close(run.modDone)
	run.outW.Close() // after modDone: see pumpGuest
}

// nanosleep is the guest's sleep (WASI poll_oneoff on a clock). It ends
// early when the module is killed: a guest waiting on a timer (a handler
// sleeping until its deadline, say) would otherwise hold a reset for as
// long as it sleeps, since a host call is beyond CloseOnContextDone's reach.
func (run *incarnation) nanosleep(ns int64) {
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-run.ctx.Done():
	}
}

// pumpAgent moves frames from the channel to the inbox. CANCEL frames are
// handled here, since the guest cannot act on them.
func (run *incarnation) pumpAgent() {
	defer run.pumps.Done()
	for {
		f, err := run.conn.ReadFrame()
		if err != nil {
			run.in.close(err)
			return
		}
		if f.Type == wire.TypeCancel {
			run.in.cancel(f.ID)
			continue
		}
		if !run.in.push(f) {
			// A request reached an incarnation being replaced.
			if isRequest(f) {
				run.answer(f.ID, spear.CodeUnavailable, "wasm instance is being reset; retry")
			}
		}
	}
}

// pumpGuest moves frames from the guest's stdout to the channel.
func (run *incarnation) pumpGuest() {
	defer run.pumps.Done()
	defer close(run.guestDone)
	r := wire.NewReader(run.outR, run.inst.maxPayload)
	for {
		f, err := r.ReadFrame()
		if err != nil {
			select {
			case <-run.modDone:
				// The module ended (stdout closes only after that) or was
				// killed; its end is reported, not this.
			default:
				if !errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, errKilled) {
					run.in.setFault(outcome{code: spear.CodeInternal, msg: "wasm guest wrote a malformed frame: " + err.Error()})
				}
			}
			// Keep draining, so that a guest still writing is not stuck.
			_, _ = io.Copy(io.Discard, run.outR)
			return
		}
		if !run.in.answered(f) {
			continue // the incarnation is being replaced; drop its output
		}
		if isAnswer(f) {
			run.inst.touch()
		}
		// An error means the channel dropped the connection; pumpAgent
		// sees that too, and the guest will read EOF.
		_ = run.conn.WriteFrame(&f)
	}
}

// answer fails request id with an ERROR frame.
func (run *incarnation) answer(id uint64, code spear.Code, msg string) {
	_ = run.conn.WriteFrame(codec.ErrorFrame(id, code, msg))
}

// fail stops the inbox and answers what it held: the request in flight
// with code and msg, those still queued with CodeUnavailable and
// queuedMsg (msg when empty).
func (run *incarnation) fail(code spear.Code, msg, queuedMsg string) {
	run.in.stop()
	inflight, queued := run.in.drain()
	if inflight != 0 {
		run.answer(inflight, code, msg)
	}
	for _, id := range queued {
		run.answer(id, spear.CodeUnavailable, cmp.Or(queuedMsg, msg))
	}
}

// isRequest reports whether f opens a request the guest must answer.
func isRequest(f wire.Frame) bool {
	return f.ID != 0 && (f.Type == wire.TypeExecuteRequest || f.Type == wire.TypeSignal)
}

// isAnswer reports whether f is the last frame answering a request.
func isAnswer(f wire.Frame) bool {
	switch f.Type {
	case wire.TypeExecuteResponse, wire.TypeError:
		return f.ID != 0
	case wire.TypeStreamData:
		return f.Flags&wire.FlagEnd != 0
	}
	return false
}
