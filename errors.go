package spear

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// Error categories. Every error the library returns matches at least one of
// them with [errors.Is]; wrapping adds detail but never hides the category.
var (
	// ErrConnectionFailed: a connection to or from an instance could not be
	// established or was lost.
	ErrConnectionFailed = errors.New("spear: connection failed")
	// ErrSendFailed: a frame could not be written.
	ErrSendFailed = errors.New("spear: send failed")
	// ErrReceiveFailed: a frame could not be read.
	ErrReceiveFailed = errors.New("spear: receive failed")
	// ErrTimeout: a deadline passed while waiting for a peer.
	ErrTimeout = errors.New("spear: timeout")
	// ErrChannelClosed: the channel or connection is closed; pending
	// requests fail with it when Close is called.
	ErrChannelClosed = errors.New("spear: channel closed")
	// ErrNotConnected: the channel exists but no authenticated instance
	// connection is bound to it right now.
	ErrNotConnected = errors.New("spear: instance not connected")
	// ErrInvalidMessage: a frame or payload broke the protocol.
	ErrInvalidMessage = errors.New("spear: invalid message")
	// ErrAuthFailed: a peer failed the handshake.
	ErrAuthFailed = errors.New("spear: authentication failed")
	// ErrTransport: the underlying transport failed.
	ErrTransport = errors.New("spear: transport error")
	// ErrConfig: a configuration could not be loaded or applied.
	ErrConfig = errors.New("spear: configuration error")
	// ErrInvalidConfig: a configuration value is out of range or inconsistent.
	ErrInvalidConfig = fmt.Errorf("%w: invalid configuration", ErrConfig)
	// ErrUnsupportedTransport: the transport is not available here.
	ErrUnsupportedTransport = errors.New("spear: unsupported transport")
	// ErrUnsupportedRuntime: the runtime type is unknown or not served.
	ErrUnsupportedRuntime = errors.New("spear: unsupported runtime")
	// ErrUnsupportedChannelType: the channel type is unknown, or not
	// allowed for the runtime type.
	ErrUnsupportedChannelType = errors.New("spear: unsupported channel type")
	// ErrChannelCreationFailed: no channel could be created for an instance.
	ErrChannelCreationFailed = errors.New("spear: channel creation failed")
	// ErrInvalidInstanceID: an instance id failed validation.
	ErrInvalidInstanceID = errors.New("spear: invalid instance id")
	// ErrHeartbeatTimeout: the instance stopped answering heartbeats. It
	// matches ErrTimeout and ErrConnectionFailed too.
	ErrHeartbeatTimeout = &categoryError{msg: "spear: heartbeat timeout", is: []error{ErrTimeout, ErrConnectionFailed}}
	// ErrPeerGone: the instance's connection ended while requests were
	// pending (the process died, or closed the connection). It matches
	// ErrConnectionFailed.
	ErrPeerGone = &categoryError{msg: "spear: instance connection lost", is: []error{ErrConnectionFailed}}
	// ErrReplaced: a newer authenticated connection of the same instance
	// took over; requests pending on the old one fail with it. It matches
	// ErrConnectionFailed.
	ErrReplaced = &categoryError{msg: "spear: connection replaced by a newer one of the same instance", is: []error{ErrConnectionFailed}}
	// ErrNotSent: a request never reached the instance whole: no
	// connection was bound, the connection had ended, or writing the
	// request failed. The instance cannot have run it, so it is safe to
	// send again (the agent retries it on another instance). It wraps the
	// cause, which carries its own category.
	ErrNotSent = errors.New("spear: request not sent")
	// ErrStreamOverflow: a stream's consumer fell too far behind and the
	// stream was cancelled. Only that stream is affected.
	ErrStreamOverflow = errors.New("spear: stream consumer too slow")
	// ErrTooManyConnections: a connection cap was reached.
	ErrTooManyConnections = &categoryError{msg: "spear: too many connections", is: []error{ErrConnectionFailed}}
)

// categoryError is a sentinel that also belongs to broader categories.
type categoryError struct {
	msg string
	is  []error
}

func (e *categoryError) Error() string { return e.msg }

func (e *categoryError) Is(target error) bool {
	for _, c := range e.is {
		if c == target {
			return true
		}
	}
	return false
}

// InstanceError is an error about one instance. It names the instance and
// the operation, and unwraps to the cause (which carries the category).
type InstanceError struct {
	ID  InstanceID
	Op  string // what was being done, for example "request" or "accept"
	Err error
}

func (e *InstanceError) Error() string {
	return fmt.Sprintf("instance %s: %s: %v", e.ID, e.Op, e.Err)
}

func (e *InstanceError) Unwrap() error { return e.Err }

// InstanceErr wraps err as an [InstanceError] unless it is nil or already
// names id.
func InstanceErr(id InstanceID, op string, err error) error {
	if err == nil {
		return nil
	}
	var ie *InstanceError
	if errors.As(err, &ie) && ie.ID == id {
		return err
	}
	return &InstanceError{ID: id, Op: op, Err: err}
}

// ContextError returns why ctx ended in the library's categories: a passed
// deadline matches ErrTimeout as well as context.DeadlineExceeded; a
// cancellation is context.Canceled. It is nil while ctx runs.
func ContextError(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

// Code is an error code carried on the wire in an ERROR frame. The values
// are fixed by docs/protocol.md.
type Code uint32

// The wire error codes.
const (
	CodeUnknown            Code = 0
	CodeInvalidMessage     Code = 1
	CodeUnsupportedVersion Code = 2
	CodeAuthFailed         Code = 3
	CodeNotFound           Code = 4 // no handler for the request
	CodeDeadlineExceeded   Code = 5
	CodeCanceled           Code = 6
	CodeTooLarge           Code = 7
	CodeUnavailable        Code = 8 // the instance is shutting down or overloaded
	CodeInternal           Code = 9 // the handler failed
	CodeResourceExhausted  Code = 10
)

var codeNames = map[Code]string{
	CodeUnknown: "unknown", CodeInvalidMessage: "invalid_message", CodeUnsupportedVersion: "unsupported_version",
	CodeAuthFailed: "auth_failed", CodeNotFound: "not_found", CodeDeadlineExceeded: "deadline_exceeded",
	CodeCanceled: "canceled", CodeTooLarge: "too_large", CodeUnavailable: "unavailable",
	CodeInternal: "internal", CodeResourceExhausted: "resource_exhausted",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code(%d)", uint32(c))
}

// RemoteError is an error the peer reported in an ERROR frame.
type RemoteError struct {
	Code    Code
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("remote error %s: %s", e.Code, e.Message)
}

// Is maps wire codes onto the local categories, so that a remote deadline
// matches ErrTimeout and a remote auth failure ErrAuthFailed.
func (e *RemoteError) Is(target error) bool {
	switch e.Code {
	case CodeDeadlineExceeded:
		return target == ErrTimeout
	case CodeAuthFailed:
		return target == ErrAuthFailed
	case CodeInvalidMessage, CodeUnsupportedVersion, CodeTooLarge:
		return target == ErrInvalidMessage
	}
	return false
}

// CodeOf returns the wire code that best describes err.
func CodeOf(err error) Code {
	var re *RemoteError
	switch {
	case errors.As(err, &re):
		return re.Code
	case errors.Is(err, ErrTimeout):
		return CodeDeadlineExceeded
	case errors.Is(err, ErrAuthFailed):
		return CodeAuthFailed
	case errors.Is(err, ErrInvalidMessage):
		return CodeInvalidMessage
	case errors.Is(err, ErrChannelClosed), errors.Is(err, ErrNotConnected):
		return CodeUnavailable
	}
	return CodeInternal
}

// Secret is a per-instance secret. It never prints or logs its value.
type Secret []byte

// String returns a fixed placeholder, never the secret.
func (Secret) String() string { return "[redacted]" }

// LogValue keeps the secret out of slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// GoString keeps the secret out of %#v output.
func (Secret) GoString() string { return "spear.Secret([redacted])" }
