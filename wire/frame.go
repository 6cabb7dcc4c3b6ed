// Package wire is the frame format of docs/protocol.md: a 16-byte header
// (payload length, version, message type, flags, request id) followed by the
// payload. It knows nothing about sessions, requests or transports; it only
// encodes and decodes frames, and checks them before allocating anything.
package wire

import (
	"encoding/binary"
	"fmt"

	"github.com/spear-go/spear"
)

// HeaderSize is the size of a frame header in bytes.
const HeaderSize = 16

// Version is the protocol version this package speaks. A frame with another
// version is rejected with a [*VersionError].
const Version = 1

// DefaultMaxPayload is the largest payload accepted unless configured
// otherwise: 16 MiB.
const DefaultMaxPayload = 16 << 20

// Type is a frame's message type.
type Type uint8

// The message types. Values are fixed by docs/protocol.md.
const (
	TypeAuthChallenge   Type = 1  // agent -> instance: server nonce
	TypeAuthRequest     Type = 2  // instance -> agent: id, client nonce, proof
	TypeAuthResponse    Type = 3  // agent -> instance: session id, features, server proof
	TypeExecuteRequest  Type = 4  // a request to run the function
	TypeExecuteResponse Type = 5  // the response to an execute request
	TypeStreamData      Type = 6  // one chunk of a streamed response
	TypeSignal          Type = 7  // terminate, pause, resume or a custom signal
	TypeHeartbeat       Type = 8  // liveness probe; answered with FlagAck
	TypeError           Type = 9  // the request with this id failed, or the connection is being refused
	TypeCancel          Type = 10 // the requester gave up on the request with this id
	TypeClose           Type = 11 // the sender is closing the connection
	TypeMessage         Type = 12 // a one-way application message
	maxType                  = TypeMessage
)

var typeNames = [...]string{
	TypeAuthChallenge: "AUTH_CHALLENGE", TypeAuthRequest: "AUTH_REQUEST", TypeAuthResponse: "AUTH_RESPONSE",
	TypeExecuteRequest: "EXECUTE_REQUEST", TypeExecuteResponse: "EXECUTE_RESPONSE", TypeStreamData: "STREAM_DATA",
	TypeSignal: "SIGNAL", TypeHeartbeat: "HEARTBEAT", TypeError: "ERROR", TypeCancel: "CANCEL",
	TypeClose: "CLOSE", TypeMessage: "MESSAGE",
}

func (t Type) String() string {
	if t.Valid() {
		return typeNames[t]
	}
	return fmt.Sprintf("TYPE(%d)", uint8(t))
}

// Valid reports whether t is a known message type.
func (t Type) Valid() bool { return t >= TypeAuthChallenge && t <= maxType }

// Flags modify a frame. Unknown bits must be sent as zero and are ignored.
type Flags uint16

// The flags.
const (
	// FlagEnd marks the last frame of a streamed response.
	FlagEnd Flags = 1 << 0
	// FlagAck marks a heartbeat as the answer to one.
	FlagAck Flags = 1 << 1
	// FlagStream on an EXECUTE_REQUEST asks for the response as a stream of
	// STREAM_DATA frames.
	FlagStream Flags = 1 << 2
	// FlagSplit on an EXECUTE_REQUEST or EXECUTE_RESPONSE says its payload
	// is laid out split: a 4-byte envelope length, the protobuf envelope
	// without its payload field, then the payload's bytes as they are
	// (docs/protocol.md, "Execute"). A side sends it only to a peer that
	// announced the "split" feature in its handshake message.
	FlagSplit Flags = 1 << 3
)

// FeatureSplit is the handshake feature that announces a side reads
// FlagSplit execute frames.
const FeatureSplit = "split"

// Frame is one protocol message.
//
// Ownership. A frame being sent belongs to its sender: a transport reads
// Payload and Body while WriteFrame runs and keeps neither after it
// returns. A received frame belongs to whoever ReadFrame returned it to;
// when its Payload came from the receive pool, Release gives it back, and
// after that neither Payload nor anything decoded from it without copying
// may be used. Releasing is optional (an unreleased buffer is garbage
// collected like any other), but releasing twice, or while something
// still uses the bytes, is a bug.
type Frame struct {
	Type  Type
	Flags Flags
	// ID is the request id: chosen by the side that opens a request (odd by
	// the agent, even by the instance), echoed by every frame that answers
	// it, and 0 for frames outside any request.
	ID uint64
	// Payload is the message body, protobuf-encoded for structured types.
	// On a frame being sent with a Body, it is the body's first part.
	Payload []byte
	// Body, on a frame being sent, is the rest of the payload: its bytes
	// follow Payload on the wire, but a transport writes them from their
	// own buffer (an iovec of their own) instead of copying them next to
	// the header. A FlagSplit execute frame carries the caller's bytes so.
	// Received frames have the whole payload in Payload and no Body.
	Body []byte

	buf *buffer // the pooled buffer under Payload, if any
}

// Len returns the payload length: Payload and Body together.
func (f *Frame) Len() int { return len(f.Payload) + len(f.Body) }

// Size returns the encoded size of f.
func (f *Frame) Size() int { return HeaderSize + f.Len() }

// Release gives the buffer under a received frame's Payload back to the
// receive pool, and clears Payload. It does nothing for a frame whose
// payload was not pooled. See Frame for when it may be called.
func (f *Frame) Release() {
	if f.buf != nil {
		f.buf.put()
		f.buf = nil
	}
	f.Payload = nil
}

// PutHeader writes f's header into h, which must be at least HeaderSize long.
func PutHeader(h []byte, f *Frame) {
	_ = h[HeaderSize-1]
	binary.BigEndian.PutUint32(h[0:4], uint32(f.Len()))
	h[4] = Version
	h[5] = byte(f.Type)
	binary.BigEndian.PutUint16(h[6:8], uint16(f.Flags))
	binary.BigEndian.PutUint64(h[8:16], f.ID)
}

// AppendFrame appends the encoding of f to dst.
func AppendFrame(dst []byte, f *Frame) []byte {
	var h [HeaderSize]byte
	PutHeader(h[:], f)
	return append(append(append(dst, h[:]...), f.Payload...), f.Body...)
}

// Header is a decoded frame header.
type Header struct {
	Length uint32 // payload length
	Type   Type
	Flags  Flags
	ID     uint64
}

// ParseHeader decodes and checks a header: the version must be [Version],
// the type known and the payload length at most maxPayload. It is called
// before the payload is read, so an oversized length is refused before any
// allocation. Errors are [*FrameTooLargeError], [*VersionError] or wrap
// [spear.ErrInvalidMessage].
func ParseHeader(h []byte, maxPayload uint32) (Header, error) {
	if len(h) < HeaderSize {
		return Header{}, fmt.Errorf("%w: header is %d bytes, want %d", spear.ErrInvalidMessage, len(h), HeaderSize)
	}
	hd := Header{
		Length: binary.BigEndian.Uint32(h[0:4]),
		Type:   Type(h[5]),
		Flags:  Flags(binary.BigEndian.Uint16(h[6:8])),
		ID:     binary.BigEndian.Uint64(h[8:16]),
	}
	if v := h[4]; v != Version {
		return hd, &VersionError{Got: v}
	}
	if hd.Length > maxPayload {
		return hd, &FrameTooLargeError{Length: hd.Length, Max: maxPayload}
	}
	if !hd.Type.Valid() {
		return hd, fmt.Errorf("%w: unknown message type %d", spear.ErrInvalidMessage, h[5])
	}
	return hd, nil
}

// Decode decodes one whole frame from b, which must hold exactly one frame
// (as a grpc message does). The payload aliases b.
func Decode(b []byte, maxPayload uint32) (Frame, error) {
	hd, err := ParseHeader(b, maxPayload)
	if err != nil {
		return Frame{}, err
	}
	if rest := len(b) - HeaderSize; rest != int(hd.Length) {
		return Frame{}, fmt.Errorf("%w: header says %d payload bytes, %d present", spear.ErrInvalidMessage, hd.Length, rest)
	}
	f := Frame{Type: hd.Type, Flags: hd.Flags, ID: hd.ID}
	if hd.Length > 0 {
		f.Payload = b[HeaderSize:]
	}
	return f, nil
}

// FrameTooLargeError reports a length prefix over the limit. The frame's
// payload was never read or allocated.
type FrameTooLargeError struct {
	Length uint32 // the length the prefix announced
	Max    uint32 // the limit in force
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("spear: frame payload of %d bytes exceeds the limit of %d", e.Length, e.Max)
}

// Is makes the error match [spear.ErrInvalidMessage].
func (e *FrameTooLargeError) Is(target error) bool { return target == spear.ErrInvalidMessage }

// VersionError reports a frame of a protocol version this side does not
// speak.
type VersionError struct {
	Got byte
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("spear: unsupported protocol version %d (this side speaks %d)", e.Got, Version)
}

// Is makes the error match [spear.ErrInvalidMessage].
func (e *VersionError) Is(target error) bool { return target == spear.ErrInvalidMessage }
