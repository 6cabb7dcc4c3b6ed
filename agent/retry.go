package agent

import (
	"context"
	"errors"
	"time"

	"github.com/spear-go/spear"
)

// maxAttempts bounds the tries of one invocation on instances that could
// not take it (see retryable).
const maxAttempts = 5

// retryable reports whether an invocation that failed with err on attempt
// may be tried again, on whichever instance the pool picks next, and
// waits a little when the instance asked for it. Only failures that prove
// the function did not run qualify, so a retry never runs a handler
// twice:
//
//   - spear.ErrNotSent: the request was never written whole to the
//     instance (no connection was bound, the connection was lost or
//     closed before the write, or the write failed);
//   - a *spear.RemoteError with code UNAVAILABLE: the instance refused the
//     request without running it (it is paused, terminating, or a wasm
//     instance being reset).
//
// Everything else is final: a connection lost after the request left
// (spear.ErrPeerGone, spear.ErrReplaced, a heartbeat timeout), a timeout,
// a cancellation, and every other answer of the instance.
func retryable(ctx context.Context, err error, attempt int) bool {
	if err == nil || attempt >= maxAttempts || ctx.Err() != nil {
		return false
	}
	if errors.Is(err, spear.ErrNotSent) {
		return true
	}
	re, ok := errors.AsType[*spear.RemoteError](err)
	if !ok || re.Code != spear.CodeUnavailable {
		return false
	}
	t := time.NewTimer(time.Duration(attempt) * 20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// measured is the latency an invocation tells about its instance: its
// time when it was answered or timed out, nothing when it never ran or
// the connection broke.
func measured(err error, took time.Duration) time.Duration {
	if err == nil || errors.Is(err, spear.ErrTimeout) {
		return took
	}
	if _, ok := errors.AsType[*spear.RemoteError](err); ok {
		return took
	}
	return 0
}
