// Package contract is the Go implementation of the conformance handler
// contract (docs/conformance.md): the methods an instance under test serves
// so that the conformance runner can drive streaming, cancellation,
// deadlines and payload limits from the agent's side. The Go fixtures
// (conformance/fixtures/goinstance on sdk, conformance/fixtures/guest on
// sdk/guest) are one-line mains around Handle.
package contract

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/spear-go/spear"
)

// The methods of the contract.
const (
	MethodEcho        = "echo"        // answers its payload
	MethodStream      = "stream"      // "N": writes chunks "0".."N-1", answers "done"
	MethodSleep       = "sleep"       // "MS": answers "slept MS" after MS milliseconds, unless interrupted
	MethodWaitCancel  = "wait-cancel" // writes "waiting", then waits to be cancelled
	MethodInterrupted = "interrupted" // answers how many handlers were interrupted, in decimal
	MethodBig         = "big"         // "N": answers N bytes
)

// MaxWait bounds wait-cancel, so a handler the agent forgot cannot run for
// ever.
const MaxWait = time.Minute

// Waiting is the chunk wait-cancel writes before it waits.
const Waiting = "waiting"

// interrupted counts handlers that stopped early because their request
// was cancelled or its deadline passed.
var interrupted atomic.Int64

// Handle serves one request of the contract. w receives streamed chunks
// (the SDK's request); the result and error are the handler's.
func Handle(ctx context.Context, method string, payload []byte, w io.Writer) ([]byte, error) {
	switch method {
	case MethodEcho:
		return payload, nil
	case MethodStream:
		n, err := number(payload)
		if err != nil {
			return nil, err
		}
		for i := range n {
			if _, err := w.Write(strconv.AppendInt(nil, i, 10)); err != nil {
				return nil, err
			}
		}
		return []byte("done"), nil
	case MethodSleep:
		ms, err := number(payload)
		if err != nil {
			return nil, err
		}
		if err := wait(ctx, time.Duration(ms)*time.Millisecond); err != nil {
			return nil, err
		}
		return []byte("slept " + strconv.FormatInt(ms, 10)), nil
	case MethodWaitCancel:
		if _, err := w.Write([]byte(Waiting)); err != nil {
			return nil, err
		}
		if err := wait(ctx, MaxWait); err != nil {
			return nil, err
		}
		return nil, &spear.RemoteError{Code: spear.CodeInternal, Message: "wait-cancel was never cancelled"}
	case MethodInterrupted:
		return strconv.AppendInt(nil, interrupted.Load(), 10), nil
	case MethodBig:
		n, err := number(payload)
		if err != nil {
			return nil, err
		}
		return bytes.Repeat([]byte{'x'}, int(n)), nil
	}
	return nil, &spear.RemoteError{Code: spear.CodeNotFound, Message: fmt.Sprintf("no method %q", method)}
}

// wait waits for d, or until ctx ends: then it counts the interruption and
// returns ctx's error.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		interrupted.Add(1)
		return ctx.Err()
	}
}

// number parses a decimal payload.
func number(b []byte) (int64, error) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 || n > 1<<31 {
		return 0, &spear.RemoteError{Code: spear.CodeInvalidMessage, Message: fmt.Sprintf("want a decimal count, not %q", b)}
	}
	return n, nil
}
