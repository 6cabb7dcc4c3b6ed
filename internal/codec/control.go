package codec

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/wire"
)

// The control messages: the payloads of the handshake (AUTH_CHALLENGE,
// AUTH_REQUEST, AUTH_RESPONSE), SIGNAL, ERROR and CLOSE frames. They are
// encoded here and nowhere else, by the agent, the SDK and the wasm guest
// library alike. Hand-written for the same reason as the execute messages,
// and one more: the guest must not link the reflection-based protobuf
// runtime, which would multiply the size of every wasm module.
//
// Encoders write fields in field-number order, as the generated code does,
// so the bytes equal proto.Marshal's (control_test.go checks it). Strings
// are written as valid UTF-8, invalid bytes replaced, since a proto3 peer
// refuses the whole message otherwise. Decoders skip unknown fields and
// accept repeated scalars packed or not, as proto does.

// AuthChallenge is spear.v1.AuthChallenge, the agent's first frame.
type AuthChallenge struct {
	Nonce    []byte
	Versions []uint32
}

// AppendAuthChallenge appends the encoding of m to dst.
func AppendAuthChallenge(dst []byte, m *AuthChallenge) []byte {
	dst = appendBytes(dst, 1, m.Nonce)
	if len(m.Versions) > 0 {
		n := 0
		for _, v := range m.Versions {
			n += protowire.SizeVarint(uint64(v))
		}
		dst = protowire.AppendTag(dst, 2, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(n))
		for _, v := range m.Versions {
			dst = protowire.AppendVarint(dst, uint64(v))
		}
	}
	return dst
}

// DecodeAuthChallenge decodes b. The nonce aliases b.
func DecodeAuthChallenge(b []byte) (AuthChallenge, error) {
	var m AuthChallenge
	err := walk(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			m.Nonce = v
		case num == 2 && typ == protowire.VarintType:
			m.Versions = append(m.Versions, uint32(n))
		case num == 2 && typ == protowire.BytesType: // packed
			for len(v) > 0 {
				x, k := protowire.ConsumeVarint(v)
				if k < 0 {
					return protowire.ParseError(k)
				}
				m.Versions = append(m.Versions, uint32(x))
				v = v[k:]
			}
		}
		return nil
	})
	return m, decodeErr(wire.TypeAuthChallenge, err)
}

// AuthRequest is spear.v1.AuthRequest, the instance's answer to the
// challenge.
type AuthRequest struct {
	InstanceID     string
	ClientNonce    []byte
	Proof          []byte
	Connection     uint32 // this connection's index among the instance's
	MaxConnections uint32 // how many the instance can hold; 0 means one
}

// AppendAuthRequest appends the encoding of m to dst.
func AppendAuthRequest(dst []byte, m *AuthRequest) []byte {
	dst = appendString(dst, 1, m.InstanceID)
	dst = appendBytes(dst, 2, m.ClientNonce)
	dst = appendBytes(dst, 3, m.Proof)
	dst = appendVarint(dst, 4, uint64(m.Connection))
	return appendVarint(dst, 5, uint64(m.MaxConnections))
}

// DecodeAuthRequest decodes b. The byte fields alias b.
func DecodeAuthRequest(b []byte) (AuthRequest, error) {
	var m AuthRequest
	err := walk(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			m.InstanceID = string(v)
		case num == 2 && typ == protowire.BytesType:
			m.ClientNonce = v
		case num == 3 && typ == protowire.BytesType:
			m.Proof = v
		case num == 4 && typ == protowire.VarintType:
			m.Connection = uint32(n)
		case num == 5 && typ == protowire.VarintType:
			m.MaxConnections = uint32(n)
		}
		return nil
	})
	return m, decodeErr(wire.TypeAuthRequest, err)
}

// AuthResponse is spear.v1.AuthResponse: the agent accepts the instance.
type AuthResponse struct {
	SessionID           string
	Features            []string
	ServerProof         []byte
	HeartbeatIntervalMs uint32
	MaxPayload          uint32
	Connections         uint32 // how many connections to hold; 0 means one
}

// AppendAuthResponse appends the encoding of m to dst.
func AppendAuthResponse(dst []byte, m *AuthResponse) []byte {
	dst = appendString(dst, 1, m.SessionID)
	for _, f := range m.Features {
		// A repeated string is written even when empty.
		dst = protowire.AppendTag(dst, 2, protowire.BytesType)
		dst = protowire.AppendString(dst, validUTF8(f))
	}
	dst = appendBytes(dst, 3, m.ServerProof)
	dst = appendVarint(dst, 4, uint64(m.HeartbeatIntervalMs))
	dst = appendVarint(dst, 5, uint64(m.MaxPayload))
	return appendVarint(dst, 6, uint64(m.Connections))
}

// DecodeAuthResponse decodes b. The server proof aliases b.
func DecodeAuthResponse(b []byte) (AuthResponse, error) {
	var m AuthResponse
	err := walk(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			m.SessionID = string(v)
		case num == 2 && typ == protowire.BytesType:
			m.Features = append(m.Features, string(v))
		case num == 3 && typ == protowire.BytesType:
			m.ServerProof = v
		case num == 4 && typ == protowire.VarintType:
			m.HeartbeatIntervalMs = uint32(n)
		case num == 5 && typ == protowire.VarintType:
			m.MaxPayload = uint32(n)
		case num == 6 && typ == protowire.VarintType:
			m.Connections = uint32(n)
		}
		return nil
	})
	return m, decodeErr(wire.TypeAuthResponse, err)
}

// SignalKind is spear.v1.SignalKind (proto/spearpb has it as a Go enum;
// the values are the same).
type SignalKind int32

// The signal kinds.
const (
	SignalUnspecified SignalKind = 0
	SignalTerminate   SignalKind = 1
	SignalPause       SignalKind = 2
	SignalResume      SignalKind = 3
	SignalCustom      SignalKind = 4
	SignalConnections SignalKind = 5
)

// Signal is spear.v1.Signal, the payload of a SIGNAL frame.
type Signal struct {
	Kind        SignalKind
	Name        string // of a custom signal
	Data        []byte
	Connections uint32 // of a connections signal
}

// AppendSignal appends the encoding of m to dst.
func AppendSignal(dst []byte, m *Signal) []byte {
	// An enum is an int32 varint: a negative one takes ten bytes.
	dst = appendVarint(dst, 1, uint64(int64(m.Kind)))
	dst = appendString(dst, 2, m.Name)
	dst = appendBytes(dst, 3, m.Data)
	return appendVarint(dst, 4, uint64(m.Connections))
}

// DecodeSignal decodes b. The data aliases b.
func DecodeSignal(b []byte) (Signal, error) {
	var m Signal
	err := walk(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			m.Kind = SignalKind(int32(n))
		case num == 2 && typ == protowire.BytesType:
			m.Name = string(v)
		case num == 3 && typ == protowire.BytesType:
			m.Data = v
		case num == 4 && typ == protowire.VarintType:
			m.Connections = uint32(n)
		}
		return nil
	})
	return m, decodeErr(wire.TypeSignal, err)
}

// AppendError appends the encoding of a spear.v1.Error to dst.
func AppendError(dst []byte, code spear.Code, msg string) []byte {
	return appendCodeText(dst, code, msg)
}

// DecodeError decodes the payload of an ERROR frame.
func DecodeError(b []byte) (*spear.RemoteError, error) {
	code, msg, err := decodeCodeText(b)
	if err != nil {
		return nil, decodeErr(wire.TypeError, err)
	}
	return &spear.RemoteError{Code: code, Message: msg}, nil
}

// ErrorFrame builds an ERROR frame answering request id (0: about the
// connection as a whole).
func ErrorFrame(id uint64, code spear.Code, msg string) *wire.Frame {
	return &wire.Frame{Type: wire.TypeError, ID: id, Payload: AppendError(nil, code, msg)}
}

// FrameError returns the error an ERROR frame carries, a
// *spear.RemoteError, or nil when f is not an ERROR frame. An undecodable
// ERROR payload gives an error matching spear.ErrInvalidMessage.
func FrameError(f wire.Frame) error {
	if f.Type != wire.TypeError {
		return nil
	}
	re, err := DecodeError(f.Payload)
	if err != nil {
		return err
	}
	return re
}

// AppendClose appends the encoding of a spear.v1.Close to dst.
func AppendClose(dst []byte, code spear.Code, reason string) []byte {
	return appendCodeText(dst, code, reason)
}

// DecodeClose decodes the payload of a CLOSE frame.
func DecodeClose(b []byte) (code spear.Code, reason string, err error) {
	code, reason, err = decodeCodeText(b)
	return code, reason, decodeErr(wire.TypeClose, err)
}

// Refusal returns the ERROR frame that tells a peer which of its frames
// broke the protocol, given the error reading it: an unsupported version,
// a payload over the limit, or another malformed frame. It reports false
// when there is nobody to tell (the frame was cut short: the peer hung up)
// or the error is not the peer's doing.
func Refusal(err error) (*wire.Frame, bool) {
	var ve *wire.VersionError
	var tl *wire.FrameTooLargeError
	switch {
	case errors.As(err, &ve):
		return ErrorFrame(0, spear.CodeUnsupportedVersion,
			fmt.Sprintf("protocol version %d is not supported; this side speaks %d", ve.Got, wire.Version)), true
	case errors.As(err, &tl):
		return ErrorFrame(0, spear.CodeTooLarge, tl.Error()), true
	case errors.Is(err, spear.ErrInvalidMessage) && !errors.Is(err, io.ErrUnexpectedEOF):
		return ErrorFrame(0, spear.CodeInvalidMessage, err.Error()), true
	}
	return nil, false
}

// appendCodeText encodes the shape Error and Close share: a code (field
// 1) and a text (field 2).
func appendCodeText(dst []byte, code spear.Code, text string) []byte {
	return appendString(appendVarint(dst, 1, uint64(code)), 2, text)
}

func decodeCodeText(b []byte) (code spear.Code, text string, err error) {
	err = walk(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			code = spear.Code(uint32(n))
		case num == 2 && typ == protowire.BytesType:
			text = string(v)
		}
		return nil
	})
	return code, text, err
}

// decodeErr reports an undecodable payload of a t frame. The parse error is
// text, not wrapped: it may be io.ErrUnexpectedEOF, which would read as a
// frame cut short by a peer that hung up (see Refusal).
func decodeErr(t wire.Type, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: undecodable %s: %s", spear.ErrInvalidMessage, t, err.Error())
}

func appendBytes(dst []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendBytes(dst, v)
}

func appendString(dst []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendString(dst, validUTF8(v))
}

func appendVarint(dst []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.VarintType)
	return protowire.AppendVarint(dst, v)
}

// validUTF8 returns s with invalid bytes replaced: proto3 strings must be
// UTF-8, and an error message may quote anything.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
