package wasm

import (
	"io"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/wire"
)

// inbox is a guest's stdin. Frames from the agent queue here; the guest's
// reads take them one at a time, and a request (EXECUTE_REQUEST or SIGNAL)
// is held back while the one before it is unanswered, so the inbox always
// knows which request the guest is running. The agent pump pushes, the
// module goroutine reads, the guest pump reports answers, the supervisor
// expires, stops and drains; a mutex orders them.
type inbox struct {
	kick chan struct{} // wakes the supervisor: a fault or a new deadline

	mu       sync.Mutex // guards the fields below
	cond     sync.Cond  // signalled when Read may make progress
	queue    []queued   // not yet handed to the guest
	buf      []byte     // encoding of the frame being handed over
	cur      []byte     // the part of buf the guest has not read
	inflight *queued    // the request the guest is running
	stopped  bool       // the incarnation is being replaced or stopped
	closed   error      // the agent's side ended (drained before EOF)
	fault    *outcome   // a failure the supervisor must act on
}

// queued is a frame from the agent, with the deadline of its request.
type queued struct {
	f        wire.Frame
	deadline time.Time // zero: none
}

func newInbox() *inbox {
	in := &inbox{kick: make(chan struct{}, 1)}
	in.cond.L = &in.mu
	return in
}

func (in *inbox) notify() {
	select {
	case in.kick <- struct{}{}:
	default:
	}
}

// Read implements io.Reader for the guest.
func (in *inbox) Read(p []byte) (int, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for {
		switch {
		case in.stopped:
			return 0, io.EOF
		case len(in.cur) > 0:
			n := copy(p, in.cur)
			in.cur = in.cur[n:]
			return n, nil
		case in.inflight == nil && len(in.queue) > 0:
			q := in.queue[0]
			in.queue = slices.Delete(in.queue, 0, 1)
			if isRequest(q.f) {
				in.inflight = &q
			}
			in.buf = wire.AppendFrame(in.buf[:0], &q.f)
			in.cur = in.buf
			continue
		case in.closed != nil:
			return 0, io.EOF
		}
		in.cond.Wait()
	}
}

// push queues a frame from the agent; false means the inbox is stopped and
// the frame was dropped.
func (in *inbox) push(f wire.Frame) bool {
	q := queued{f: f}
	if ms := timeoutMs(f); ms > 0 {
		q.deadline = time.Now().Add(time.Duration(ms) * time.Millisecond)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopped {
		return false
	}
	in.queue = append(in.queue, q)
	in.cond.Broadcast()
	if !q.deadline.IsZero() {
		in.notify()
	}
	return true
}

// timeoutMs returns the timeout_ms of an EXECUTE_REQUEST (field 3 of
// spear.v1.ExecuteRequest), without decoding the rest.
func timeoutMs(f wire.Frame) uint64 {
	if f.Type != wire.TypeExecuteRequest {
		return 0
	}
	b := f.Payload
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0
		}
		b = b[n:]
		if num == 3 && typ == protowire.VarintType {
			v, _ := protowire.ConsumeVarint(b)
			return v
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0
		}
		b = b[n:]
	}
	return 0
}

// cancel handles a CANCEL frame: a queued request is dropped; cancelling
// the request in flight is a fault, since only replacing the module stops
// it.
func (in *inbox) cancel(id uint64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopped {
		return
	}
	if in.inflight != nil && in.inflight.f.ID == id {
		in.setFaultLocked(outcome{code: spear.CodeCanceled, msg: "request canceled by the caller"})
		return
	}
	in.queue = slices.DeleteFunc(in.queue, func(q queued) bool { return isRequest(q.f) && q.f.ID == id })
}

// answered notes a frame from the guest; the request in flight is done
// when it is answered. It reports whether the frame should be passed on.
func (in *inbox) answered(f wire.Frame) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopped {
		return false
	}
	if in.inflight != nil && in.inflight.f.ID == f.ID && isAnswer(f) {
		in.inflight = nil
		in.cond.Broadcast()
	}
	return true
}

// nextDeadline returns the earliest deadline of the held requests.
func (in *inbox) nextDeadline() (time.Time, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	var next time.Time
	consider := func(q *queued) {
		if !q.deadline.IsZero() && (next.IsZero() || q.deadline.Before(next)) {
			next = q.deadline
		}
	}
	if in.inflight != nil {
		consider(in.inflight)
	}
	for i := range in.queue {
		consider(&in.queue[i])
	}
	return next, !next.IsZero()
}

// expire drops the queued requests whose deadline passed, returning their
// ids, and reports whether the request in flight is past its deadline.
func (in *inbox) expire(now time.Time) (inflight bool, dropped []uint64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopped {
		return false, nil
	}
	past := func(q *queued) bool { return !q.deadline.IsZero() && !now.Before(q.deadline) }
	in.queue = slices.DeleteFunc(in.queue, func(q queued) bool {
		if past(&q) {
			dropped = append(dropped, q.f.ID)
			return true
		}
		return false
	})
	return in.inflight != nil && past(in.inflight), dropped
}

func (in *inbox) setFault(o outcome) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.setFaultLocked(o)
}

// setFaultLocked records o unless a fault is already waiting; in.mu must
// be held.
func (in *inbox) setFaultLocked(o outcome) {
	if in.fault == nil {
		in.fault = &o
	}
	in.notify()
}

func (in *inbox) takeFault() (outcome, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	f := in.fault
	in.fault = nil
	if f == nil {
		return outcome{}, false
	}
	return *f, true
}

// stop makes the guest read EOF at once and drops whatever the guest
// writes or the agent sends from now on. Idempotent.
func (in *inbox) stop() {
	in.mu.Lock()
	in.stopped = true
	in.cond.Broadcast()
	in.mu.Unlock()
}

// drain empties the inbox and returns the request in flight (0 if none)
// and the queued requests, which are owed an answer.
func (in *inbox) drain() (inflight uint64, queue []uint64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.inflight != nil {
		inflight = in.inflight.f.ID
		in.inflight = nil
	}
	for _, q := range in.queue {
		if isRequest(q.f) {
			queue = append(queue, q.f.ID)
		}
	}
	in.queue = nil
	return inflight, queue
}

// close records that the agent's side ended; the guest reads what is
// queued, then EOF.
func (in *inbox) close(cause error) {
	in.mu.Lock()
	if in.closed == nil {
		in.closed = cause
	}
	in.cond.Broadcast()
	in.mu.Unlock()
}

func (in *inbox) closeCause() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.closed
}
