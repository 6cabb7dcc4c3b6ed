package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/conformance/contract"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/wire"
)

// The checks that run the instance as the agent does.

func checkHandshake(ctx context.Context, e *env) (string, error) {
	s, err := e.start(ctx, nil)
	if err != nil {
		return "", err
	}
	payload := make([]byte, 1024)
	_, _ = rand.Read(payload)
	out, err := s.call(ctx, contract.MethodEcho, payload)
	if err != nil {
		return "", fmt.Errorf("echo after the handshake: %w", err)
	}
	if !bytes.Equal(out, payload) {
		return "", fmt.Errorf("echo of 1024 random bytes answered %s", quote(out))
	}
	return "authenticated; echoed 1024 bytes", nil
}

// busyProbe is the heartbeat interval of heartbeat-busy, and busyMisses
// the silent intervals it allows: the request sleeps many times longer.
const (
	busyProbe  = 100 * time.Millisecond
	busyMisses = 5
	busySleep  = 15 * busyProbe
)

func checkHeartbeatBusy(ctx context.Context, e *env) (string, error) {
	if e.transport == channel.Memory {
		return "", skip("memory channels carry no heartbeats: a wasm guest runs one request at a time, and its runtime watches it")
	}
	s, err := e.start(ctx, func(c *channel.Config) {
		c.HeartbeatInterval = busyProbe
		c.HeartbeatMisses = busyMisses
	})
	if err != nil {
		return "", err
	}
	ms := strconv.FormatInt(busySleep.Milliseconds(), 10)
	out, err := s.call(ctx, contract.MethodSleep, []byte(ms))
	if err != nil {
		return "", fmt.Errorf("a %s request with probes every %s: %w", busySleep, busyProbe, err)
	}
	if string(out) != "slept "+ms {
		return "", fmt.Errorf("sleep answered %s, want %q", quote(out), "slept "+ms)
	}
	return fmt.Sprintf("a %s request went through with probes every %s (%d misses allowed)", busySleep, busyProbe, busyMisses), nil
}

func checkConcurrency(ctx context.Context, e *env) (string, error) {
	s, err := e.start(ctx, nil)
	if err != nil {
		return "", err
	}
	const sleeps, echoes = 6, 24
	type answer struct {
		want, got []byte
		err       error
		done      int // completion order
	}
	answers := make([]answer, sleeps+echoes)
	var order atomic.Int32
	var wg sync.WaitGroup
	for i := range answers {
		method, payload := contract.MethodEcho, []byte(fmt.Sprintf("echo-%d-%s", i, randomHex(4)))
		answers[i].want = payload
		if i < sleeps {
			// Sent first, finishing last: the later the shorter.
			ms := strconv.Itoa(100*(sleeps-i) + 50)
			method, payload = contract.MethodSleep, []byte(ms)
			answers[i].want = []byte("slept " + ms)
		}
		wg.Go(func() {
			answers[i].got, answers[i].err = s.call(ctx, method, payload)
			answers[i].done = int(order.Add(1))
		})
	}
	wg.Wait()
	for i, a := range answers {
		switch {
		case a.err != nil:
			return "", fmt.Errorf("request %d of %d: %w", i+1, len(answers), a.err)
		case !bytes.Equal(a.got, a.want):
			return "", fmt.Errorf("request %d of %d got %s, want %s: answers matched to the wrong request", i+1, len(answers), quote(a.got), quote(a.want))
		}
	}
	how := "one at a time"
	if answers[sleeps-1].done < answers[0].done { // the shortest sleep beat the longest
		how = "concurrently, out of order"
	}
	return fmt.Sprintf("%d requests at once, each answered by its id (served %s)", len(answers), how), nil
}

// streamChunks is how many chunks the streaming check asks for.
const streamChunks = 100

func checkStreaming(ctx context.Context, e *env) (string, error) {
	s, err := e.start(ctx, nil)
	if err != nil {
		return "", err
	}
	st, err := channel.ExecuteStream(ctx, s.ch, channel.Invocation{
		Method: contract.MethodStream, Payload: []byte(strconv.Itoa(streamChunks)),
	})
	if err != nil {
		return "", err
	}
	defer st.Close()
	for i := 0; i <= streamChunks; i++ {
		want := strconv.Itoa(i)
		if i == streamChunks {
			want = "done"
		}
		chunk, err := st.Recv()
		if err != nil {
			return "", fmt.Errorf("chunk %d: %w", i, err)
		}
		if string(chunk) != want {
			return "", fmt.Errorf("chunk %d is %s, want %q", i, quote(chunk), want)
		}
	}
	if chunk, err := st.Recv(); !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("after the last chunk: got %s, %s; want the end of the stream", quote(chunk), errText(err))
	}
	out, err := s.call(ctx, contract.MethodStream, []byte("5"))
	if err != nil {
		return "", fmt.Errorf("stream called without STREAM: %w", err)
	}
	if string(out) != "01234done" {
		return "", fmt.Errorf("stream called without STREAM answered %s, want the chunks gathered, %q", quote(out), "01234done")
	}
	return fmt.Sprintf("%d chunks in order, then END; a unary call gathered them", streamChunks+1), nil
}

func checkCancel(ctx context.Context, e *env) (string, error) {
	s, err := e.start(ctx, nil)
	if err != nil {
		return "", err
	}
	st, err := channel.ExecuteStream(ctx, s.ch, channel.Invocation{Method: contract.MethodWaitCancel})
	if err != nil {
		return "", err
	}
	chunk, err := st.Recv()
	if err != nil || string(chunk) != contract.Waiting {
		st.Close()
		return "", fmt.Errorf("wait-cancel's first chunk: got %s, %s; want %q", quote(chunk), errText(err), contract.Waiting)
	}
	st.Close() // sends CANCEL
	evidence, err := s.stopped(ctx)
	if err != nil {
		return "", fmt.Errorf("after CANCEL: %w", err)
	}
	if _, err := s.call(ctx, contract.MethodEcho, []byte("after cancel")); err != nil {
		return "", fmt.Errorf("echo after the cancel: %w", err)
	}
	return "after CANCEL, " + evidence, nil
}

// deadlineSleep and deadlineTimeout are the deadline check's request: a
// sleep many times longer than its timeout.
const (
	deadlineSleep   = 3000
	deadlineTimeout = 300
)

func checkDeadline(ctx context.Context, e *env) (string, error) {
	s, err := e.start(ctx, nil)
	if err != nil {
		return "", err
	}
	// timeout_ms is set by hand, far below the agent's own wait, so that
	// the answer shows what the instance did at its deadline.
	b := codec.AppendExecuteRequest(nil, &codec.ExecuteRequest{
		Method: contract.MethodSleep, Payload: []byte(strconv.Itoa(deadlineSleep)), TimeoutMs: deadlineTimeout,
	})
	_, err = s.ch.Request(ctx, channel.Message{Type: wire.TypeExecuteRequest, Payload: b})
	what := fmt.Sprintf("a %d ms sleep with timeout_ms %d", deadlineSleep, deadlineTimeout)
	if err == nil {
		return "", fmt.Errorf("%s was answered with its result, after its deadline", what)
	}
	if err := wantCode(err, spear.CodeDeadlineExceeded, what); err != nil {
		return "", err
	}
	evidence, err := s.stopped(ctx)
	if err != nil {
		return "", fmt.Errorf("after the deadline: %w", err)
	}
	return "answered DEADLINE_EXCEEDED; " + evidence, nil
}

// answerSize returns the largest n for which an EXECUTE_RESPONSE carrying
// n bytes has a payload of at most limit bytes, and that payload's size:
// in the split layout, 4 bytes of envelope length and an empty envelope
// before the bytes; otherwise one protobuf message.
func answerSize(limit uint32, split bool) (n, size int) {
	if split {
		return int(limit) - 4, int(limit)
	}
	for n = int(limit) - 1; n > 0; n-- {
		if size = 1 + protowire.SizeVarint(uint64(n)) + n; size <= int(limit) {
			return n, size
		}
	}
	return 0, 0
}

// limitTimeout is the timeout_ms of the payload-limit check's request;
// its size is part of the frame's.
const limitTimeout = 60000

// requestAtLimit returns an EXECUTE_REQUEST payload for echo, of at most
// limit bytes, as large as one can be.
func requestAtLimit(limit uint32) (req, payload []byte) {
	fixed := len(codec.AppendExecuteRequest(nil, &codec.ExecuteRequest{Method: contract.MethodEcho, TimeoutMs: limitTimeout}))
	for n := int(limit) - fixed - 1; n > 0; n-- {
		if fixed+1+protowire.SizeVarint(uint64(n))+n <= int(limit) {
			payload = bytes.Repeat([]byte{'y'}, n)
			return codec.AppendExecuteRequest(nil, &codec.ExecuteRequest{Method: contract.MethodEcho, Payload: payload, TimeoutMs: limitTimeout}), payload
		}
	}
	return nil, nil
}

func checkPayloadLimit(ctx context.Context, e *env) (string, error) {
	s, err := e.start(ctx, nil)
	if err != nil {
		return "", err
	}
	limit := e.opts.MaxPayload
	split, err := s.split(ctx)
	if err != nil {
		return "", err
	}
	n, size := answerSize(limit, split)
	out, err := s.call(ctx, contract.MethodBig, []byte(strconv.Itoa(n)))
	if err != nil {
		return "", fmt.Errorf("an answer of %d bytes (a %d-byte EXECUTE_RESPONSE, the limit being %d): %w", n, size, limit, err)
	}
	if len(out) != n || bytes.Count(out, []byte{'x'}) != n {
		return "", fmt.Errorf("big %d answered %d bytes", n, len(out))
	}
	req, payload := requestAtLimit(limit)
	m, err := s.ch.Request(ctx, channel.Message{Type: wire.TypeExecuteRequest, Payload: req})
	if err != nil {
		return "", fmt.Errorf("a request of %d bytes (the limit): %w", len(req), err)
	}
	echoed, _, err := codec.ExecuteResponseOf(&wire.Frame{Type: m.Type, Flags: m.Flags, Payload: m.Payload})
	if err != nil || !bytes.Equal(echoed, payload) {
		return "", fmt.Errorf("the echo of a request at the limit came back as %d bytes (%s)", len(echoed), errText(err))
	}
	layout := "one protobuf message"
	if split {
		// The same at the limit in the split layout, which the agent
		// uses for this instance.
		tctx, cancel := context.WithTimeout(ctx, limitTimeout*time.Millisecond)
		defer cancel()
		envelope := 4 + len(codec.AppendExecuteRequest(nil, &codec.ExecuteRequest{Method: contract.MethodEcho, TimeoutMs: limitTimeout}))
		payload := bytes.Repeat([]byte{'z'}, int(limit)-envelope)
		res, err := channel.Call(tctx, s.ch, channel.Invocation{Method: contract.MethodEcho, Payload: payload})
		if err != nil {
			return "", fmt.Errorf("a split request of %d bytes (the limit): %w", int(limit), err)
		}
		ok := bytes.Equal(res.Payload, payload)
		res.Release()
		if !ok {
			return "", fmt.Errorf("the echo of a split request at the limit came back different")
		}
		layout = "both layouts"
	}
	return fmt.Sprintf("an answer and a request of %d bytes each, %s (limit %d)", size, layout, limit), nil
}

func checkPayloadOverLimit(ctx context.Context, e *env) (string, error) {
	s, err := e.start(ctx, nil)
	if err != nil {
		return "", err
	}
	split, err := s.split(ctx)
	if err != nil {
		return "", err
	}
	disconnects := s.ch.Stats().Disconnects
	n, _ := answerSize(e.opts.MaxPayload, split)
	n++ // one byte over
	_, err = s.call(ctx, contract.MethodBig, []byte(strconv.Itoa(n)))
	if err := wantCode(err, spear.CodeTooLarge, fmt.Sprintf("an answer of %d bytes, over the limit of %d", n, e.opts.MaxPayload)); err != nil {
		return "", err
	}
	if _, err := s.call(ctx, contract.MethodEcho, []byte("after too large")); err != nil {
		return "", fmt.Errorf("echo after the refused answer: %w", err)
	}
	if d := s.ch.Stats().Disconnects; d != disconnects {
		return "", errors.New("the instance's connection was lost and replaced: the refusal must not cost the connection")
	}
	return "TOO_LARGE, on the same connection, which went on", nil
}

func checkUnknownMethod(ctx context.Context, e *env) (string, error) {
	s, err := e.start(ctx, nil)
	if err != nil {
		return "", err
	}
	method := "no-such-method-" + randomHex(4)
	_, err = s.call(ctx, method, []byte("x"))
	if err := wantCode(err, spear.CodeNotFound, "method "+method); err != nil {
		return "", err
	}
	return "NOT_FOUND", nil
}

func checkSignals(ctx context.Context, e *env) (string, error) {
	s, err := e.start(ctx, nil)
	if err != nil {
		return "", err
	}
	if err := channel.SendSignal(ctx, s.ch, channel.SignalPause, "", nil); err != nil {
		return "", fmt.Errorf("pause: %w", err)
	}
	_, err = s.call(ctx, contract.MethodEcho, []byte("paused"))
	if err := wantCode(err, spear.CodeUnavailable, "echo while paused"); err != nil {
		return "", err
	}
	if err := channel.SendSignal(ctx, s.ch, channel.SignalResume, "", nil); err != nil {
		return "", fmt.Errorf("resume: %w", err)
	}
	if _, err := s.call(ctx, contract.MethodEcho, []byte("resumed")); err != nil {
		return "", fmt.Errorf("echo after resume: %w", err)
	}
	err = channel.SendSignal(ctx, s.ch, channel.SignalCustom, "conformance-unknown", []byte("data"))
	if err := wantCode(err, spear.CodeNotFound, "an unknown custom signal"); err != nil {
		return "", err
	}
	return "pause, resume and an unknown custom signal answered as specified", nil
}

// terminateSleep is the request in flight when terminate arrives.
const terminateSleep = 800

func checkTerminate(ctx context.Context, e *env) (string, error) {
	s, err := e.start(ctx, nil)
	if err != nil {
		return "", err
	}
	ms := strconv.Itoa(terminateSleep)
	// A stream's request is on the wire when ExecuteStream returns, so it
	// is in flight before the signal.
	st, err := channel.ExecuteStream(ctx, s.ch, channel.Invocation{Method: contract.MethodSleep, Payload: []byte(ms)})
	if err != nil {
		return "", err
	}
	defer st.Close()
	if err := channel.SendSignal(ctx, s.ch, channel.SignalTerminate, "", nil); err != nil {
		return "", fmt.Errorf("terminate was not acknowledged: %w", err)
	}
	_, err = s.call(ctx, contract.MethodEcho, []byte("after terminate"))
	if err == nil {
		return "", errors.New("a request after terminate was served; want UNAVAILABLE")
	}
	if code, ok := codeOf(err); ok && code != spear.CodeUnavailable {
		return "", fmt.Errorf("a request after terminate: want UNAVAILABLE, got %w", err)
	}
	chunk, err := st.Recv()
	if err != nil || string(chunk) != "slept "+ms {
		return "", fmt.Errorf("the request running at terminate did not finish: got %s, %s", quote(chunk), errText(err))
	}
	t := time.NewTimer(2 * e.opts.Patience)
	defer t.Stop()
	select {
	case <-s.inst.Done():
	case <-t.C:
		return "", fmt.Errorf("the instance was still running %s after terminate", 2*e.opts.Patience)
	}
	if err := e.l.cleanExit(s.inst); err != nil {
		return "", err
	}
	return "acknowledged; the running request finished, a new one was refused, then a clean exit", nil
}
