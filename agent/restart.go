package agent

import (
	"errors"
	"fmt"
	"time"
)

// crashState is a function's crash-loop protection: its starts that
// failed in a row. After crashLoopAfter of them the function is in
// crash-loop back-off until retryAt: invocations that find nothing ready
// fail at once with the last start error, and no start is tried before
// retryAt. A start that succeeds ends it. The back-off is the restart
// policy's (initial_backoff doubling to max_backoff).
type crashState struct {
	failures int
	lastErr  error
	lastAt   time.Time
	retryAt  time.Time
}

func (c *crashState) failed(now time.Time, err error, cfg RestartConfig) {
	c.failures++
	c.lastErr, c.lastAt = err, now
	c.retryAt = now.Add(backoff(cfg, c.failures-crashLoopAfter))
}

func (c *crashState) succeeded() { *c = crashState{} }

// looping reports whether the function is in crash-loop back-off at now.
func (c *crashState) looping(now time.Time) bool {
	return c.failures >= crashLoopAfter && now.Before(c.retryAt)
}

// err is the error of an invocation refused during the back-off.
func (c *crashState) err(function string, now time.Time) error {
	return &CrashLoopError{Function: function, Failures: c.failures, LastError: c.lastErr,
		RetryAfter: max(c.retryAt.Sub(now), time.Second), RetryAt: c.retryAt}
}

// restartState is the automatic replacement of instances that stopped
// unasked (restart policy on-failure): each owes a replacement, due after
// a back-off that doubles with each such stop in a row. The back-off
// delays only these replacements: an invocation that finds no free slot
// starts an instance at once while the pool is under max_instances, and
// that start pays off one replacement owed.
type restartState struct {
	consecutive int       // unasked stops in a row, for the back-off
	owed        int       // replacements not yet started
	at          time.Time // when they are due
	total       int       // replacements owed since the pool started
}

// crashed records an unasked stop of an instance that ran for ran, and
// returns the replacement's back-off. An instance that ran for
// max_backoff or longer starts a fresh series.
func (r *restartState) crashed(now time.Time, ran time.Duration, cfg RestartConfig) time.Duration {
	if ran >= cfg.MaxBackoff.D() {
		r.consecutive = 0
	}
	d := backoff(cfg, r.consecutive)
	r.consecutive++
	r.owed++
	r.total++
	if at := now.Add(d); r.owed == 1 || at.Before(r.at) {
		r.at = at
	}
	return d
}

// due returns how many replacements are due at now.
func (r *restartState) due(now time.Time) int {
	if r.owed > 0 && !now.Before(r.at) {
		return r.owed
	}
	return 0
}

// backoff returns initial_backoff doubled n times, capped at max_backoff.
func backoff(cfg RestartConfig, n int) time.Duration {
	return doubled(cfg.InitialBackoff.D(), cfg.MaxBackoff.D(), n)
}

// doubled returns d doubled n times, capped at limit.
func doubled(d, limit time.Duration, n int) time.Duration {
	for i := 0; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// CrashLoopError is the error of an invocation refused because its
// function is in crash-loop back-off. It matches ErrNoInstance and
// unwraps to the last start error.
type CrashLoopError struct {
	Function   string
	Failures   int
	LastError  error
	RetryAt    time.Time
	RetryAfter time.Duration // until the next start is tried (at least 1s)
}

// Error says the function is in crash-loop back-off, for how long, and why.
func (e *CrashLoopError) Error() string {
	return fmt.Sprintf("%v: function %s is in crash-loop back-off: %d starts failed in a row, the next is tried in %s; last error: %v",
		ErrNoInstance, e.Function, e.Failures, e.RetryAfter.Round(time.Millisecond), e.LastError)
}

// Unwrap returns ErrNoInstance and the last start error.
func (e *CrashLoopError) Unwrap() []error { return []error{ErrNoInstance, e.LastError} }

// QueueFullError is the error of an invocation refused because max_queue
// invocations already wait for an instance. It matches ErrQueueFull.
type QueueFullError struct {
	Function   string
	Queued     int
	RetryAfter time.Duration
}

// Error says the queue is full and when to retry.
func (e *QueueFullError) Error() string {
	return fmt.Sprintf("%v: function %s has %d invocations waiting for an instance (max_queue); retry after %s",
		ErrQueueFull, e.Function, e.Queued, e.RetryAfter.Round(time.Millisecond))
}

// Unwrap returns ErrQueueFull.
func (e *QueueFullError) Unwrap() error { return ErrQueueFull }

// RetryAfter returns when a refused invocation may be tried again: the
// Retry-After of a 429 (queue full) or a 503 (crash-loop back-off), or 0.
func RetryAfter(err error) time.Duration {
	if e, ok := errors.AsType[*QueueFullError](err); ok {
		return e.RetryAfter
	}
	if e, ok := errors.AsType[*CrashLoopError](err); ok {
		return e.RetryAfter
	}
	return 0
}
