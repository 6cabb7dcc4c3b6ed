// Package transport defines what a transport does in Spear: move whole
// frames between the agent and one instance, and nothing else. Request ids,
// deadlines, authentication and heartbeats live above it, in the session
// layer, written once for every transport.
//
// The implementations are transport/unix, transport/tcp (both byte streams
// framed by [NewStreamConn]), transport/grpc and transport/memory.
package transport

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/wire"
)

// Conn is one connection between the agent and an instance.
type Conn interface {
	// ReadFrame returns the next frame; its payload belongs to the caller.
	// Only one goroutine may call it at a time. It returns an error
	// matching spear.ErrChannelClosed once the connection is closed, and
	// the errors of wire.Reader for malformed input.
	ReadFrame() (wire.Frame, error)
	// WriteFrame sends f. It is safe for concurrent use, and returns once
	// the frame is handed to the operating system or the peer; f.Payload
	// is not retained after that.
	WriteFrame(f *wire.Frame) error
	// Close closes the connection and unblocks ReadFrame and WriteFrame.
	// It is safe to call more than once and from many goroutines.
	Close() error
	// Info describes the connection.
	Info() Info
}

// ReadDeadliner is implemented by connections whose ReadFrame a deadline
// can interrupt without losing data. The session layer lets a caller read
// its own answer only on such a connection, since it must be able to stop
// reading when its own deadline passes.
type ReadDeadliner interface {
	// SetReadDeadline makes a ReadFrame that is waiting, or one called
	// later, fail with an error matching os.ErrDeadlineExceeded once t has
	// passed; a frame being read then is resumed by the next ReadFrame.
	// The zero time removes the deadline. It is safe to call from any
	// goroutine.
	SetReadDeadline(t time.Time) error
}

// Buffered is implemented by connections that can tell whether frames
// have arrived that ReadFrame has not returned yet. The session layer uses
// it to tell a burst of requests, which it spreads over goroutines, from a
// lone one, which it serves on the goroutine that read it.
type Buffered interface {
	Buffered() bool
}

// Info describes a connection.
type Info struct {
	// Transport is the transport's name: "unix", "tcp", "grpc" or "memory".
	Transport string
	// Remote is the peer's address, when the transport knows one.
	Remote string
	// PeerPID and PeerUID are the peer's process id and user id from the
	// kernel (SO_PEERCRED), for unix sockets on Linux; -1 when unknown.
	PeerPID, PeerUID int
	// PeerSID is the peer process's session id, read at accept while a
	// pidfd held that very process (unix sockets on Linux); 0 when
	// unknown. A process can leave its session only for a new one of its
	// own, and never join another, so a session shows descent from the
	// process that created it.
	PeerSID int
	// TLS is the connection's TLS state once its handshake is done; nil
	// on a connection without TLS, or before the handshake.
	TLS *tls.ConnectionState
}

// Listener accepts connections from instances.
type Listener interface {
	// Accept waits for the next connection. After Close it returns an
	// error matching spear.ErrChannelClosed.
	Accept() (Conn, error)
	// Close stops listening; connections already accepted stay open.
	Close() error
	// Addr is the address instances dial, in the form the transport's
	// Dial takes.
	Addr() string
}

// FilterCloseErr maps the ways a connection ends (EOF, a closed socket or
// pipe, EPIPE, ECONNRESET) to an error matching spear.ErrChannelClosed and leaves
// other errors as they are. It is the one place that decides what "closed"
// looks like.
func FilterCloseErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, spear.ErrChannelClosed):
		return err
	case errors.Is(err, net.ErrClosed), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrClosedPipe):
		return &closedError{cause: err}
	}
	return err
}

type closedError struct{ cause error }

func (e *closedError) Error() string        { return "spear: channel closed: " + e.cause.Error() }
func (e *closedError) Unwrap() []error      { return []error{spear.ErrChannelClosed, e.cause} }
func (e *closedError) Is(target error) bool { return target == spear.ErrChannelClosed }
