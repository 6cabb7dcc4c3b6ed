package guest

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/spear-go/spear"
)

// The payloads of the protocol are protobuf messages (proto/spear/v1). The
// generated package proto/spearpb also carries the gRPC service, and with it
// grpc-go, net/http and crypto/tls, which would multiply the size of every
// guest module; so the guest encodes the few messages it needs by hand with
// protowire. Field numbers follow spear.proto; codec_test.go checks both
// directions against spearpb.

// field is one decoded protobuf field: a varint or a length-delimited value
// (bytes, string, or an embedded message). Other wire types are skipped.
type field struct {
	num    protowire.Number
	varint uint64
	bytes  []byte
}

// eachField calls fn for every varint and length-delimited field of b.
func eachField(b []byte, fn func(field)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: bad protobuf tag: %w", spear.ErrInvalidMessage, protowire.ParseError(n))
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m >= 0 {
				fn(field{num: num, varint: v})
			}
			n = m
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m >= 0 {
				fn(field{num: num, bytes: v})
			}
			n = m
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: bad protobuf field %d: %w", spear.ErrInvalidMessage, num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendString(b []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return b
	}
	// proto3 strings must be valid UTF-8, or the agent cannot decode the
	// message at all.
	v = strings.ToValidUTF8(v, "\uFFFD")
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// signal is spear.v1.Signal.
type signal struct {
	kind uint64 // spear.v1.SignalKind
	name string
}

// The spear.v1.SignalKind values the guest acts on.
const (
	signalTerminate = 1
	signalPause     = 2
	signalResume    = 3
)

func decodeSignal(b []byte) (signal, error) {
	var s signal
	err := eachField(b, func(f field) {
		switch f.num {
		case 1:
			s.kind = f.varint
		case 2:
			s.name = string(f.bytes)
		}
	})
	return s, err
}

// encodeError is spear.v1.Error.
func encodeError(code spear.Code, msg string) []byte {
	return appendString(appendVarint(nil, 1, uint64(code)), 2, msg)
}

func decodeError(b []byte) *spear.RemoteError {
	e := &spear.RemoteError{}
	_ = eachField(b, func(f field) {
		switch f.num {
		case 1:
			e.Code = spear.Code(f.varint)
		case 2:
			e.Message = string(f.bytes)
		}
	})
	return e
}

// authChallengeNonce returns the nonce of a spear.v1.AuthChallenge.
func authChallengeNonce(b []byte) ([]byte, error) {
	var nonce []byte
	err := eachField(b, func(f field) {
		if f.num == 1 {
			nonce = f.bytes
		}
	})
	return nonce, err
}

// encodeAuthRequest is spear.v1.AuthRequest.
func encodeAuthRequest(id string, clientNonce, proof []byte) []byte {
	b := appendString(nil, 1, id)
	b = appendBytes(b, 2, clientNonce)
	return appendBytes(b, 3, proof)
}

// authResponse is the part of spear.v1.AuthResponse the guest uses.
type authResponse struct {
	sessionID   string
	serverProof []byte
	maxPayload  uint32 // the agent's payload limit; 0 when it announces none
}

func decodeAuthResponse(b []byte) (authResponse, error) {
	var r authResponse
	err := eachField(b, func(f field) {
		switch f.num {
		case 1:
			r.sessionID = string(f.bytes)
		case 3:
			r.serverProof = f.bytes
		case 5:
			r.maxPayload = uint32(f.varint)
		}
	})
	return r, err
}
