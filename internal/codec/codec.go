// Package codec encodes and decodes every protobuf payload of the protocol
// by hand with protowire: the two on the hot path, ExecuteRequest and
// ExecuteResponse (this file), and the control messages of the handshake,
// SIGNAL, ERROR and CLOSE frames (control.go). The bytes are exactly those
// of the messages in proto/spear/v1/spear.proto (the tests check both ways
// against the generated code), but decoding aliases byte fields instead of
// copying them and skips reflection, which matters when a payload is large
// or requests are many, and keeps the protobuf runtime out of wasm guests.
package codec

import (
	"encoding/binary"
	"errors"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/spear-go/spear/wire"
)

// Field numbers of spear.v1.ExecuteRequest and ExecuteResponse.
const (
	reqMethod   = 1
	reqPayload  = 2
	reqTimeout  = 3
	reqMetadata = 4
	respPayload = 1
	respMeta    = 2
	entryKey    = 1
	entryValue  = 2
)

// ExecuteRequest mirrors spearpb.ExecuteRequest.
type ExecuteRequest struct {
	Method    string
	Payload   []byte
	TimeoutMs uint64
	Metadata  map[string]string
}

// AppendExecuteRequest appends the encoding of r to dst.
func AppendExecuteRequest(dst []byte, r *ExecuteRequest) []byte {
	if r.Method != "" {
		dst = protowire.AppendTag(dst, reqMethod, protowire.BytesType)
		dst = protowire.AppendString(dst, r.Method)
	}
	if len(r.Payload) > 0 {
		dst = protowire.AppendTag(dst, reqPayload, protowire.BytesType)
		dst = protowire.AppendBytes(dst, r.Payload)
	}
	if r.TimeoutMs != 0 {
		dst = protowire.AppendTag(dst, reqTimeout, protowire.VarintType)
		dst = protowire.AppendVarint(dst, r.TimeoutMs)
	}
	return appendMap(dst, reqMetadata, r.Metadata)
}

// DecodeExecuteRequest decodes b. The payload aliases b.
func DecodeExecuteRequest(b []byte) (ExecuteRequest, error) {
	var r ExecuteRequest
	err := walk(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == reqMethod && typ == protowire.BytesType:
			r.Method = string(v)
		case num == reqPayload && typ == protowire.BytesType:
			r.Payload = v
		case num == reqTimeout && typ == protowire.VarintType:
			r.TimeoutMs = n
		case num == reqMetadata && typ == protowire.BytesType:
			return decodeEntry(v, &r.Metadata)
		}
		return nil
	})
	if err != nil {
		return ExecuteRequest{}, decodeErr(wire.TypeExecuteRequest, err)
	}
	return r, nil
}

// AppendExecuteResponse appends the encoding of an ExecuteResponse.
func AppendExecuteResponse(dst, payload []byte, metadata map[string]string) []byte {
	if len(payload) > 0 {
		dst = protowire.AppendTag(dst, respPayload, protowire.BytesType)
		dst = protowire.AppendBytes(dst, payload)
	}
	return appendMap(dst, respMeta, metadata)
}

// DecodeExecuteResponse decodes b. The payload aliases b.
func DecodeExecuteResponse(b []byte) (payload []byte, metadata map[string]string, err error) {
	err = walk(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == respPayload && typ == protowire.BytesType:
			payload = v
		case num == respMeta && typ == protowire.BytesType:
			return decodeEntry(v, &metadata)
		}
		return nil
	})
	if err != nil {
		return nil, nil, decodeErr(wire.TypeExecuteResponse, err)
	}
	return payload, metadata, nil
}

// The split layout of an execute frame (wire.FlagSplit): a 4-byte
// big-endian envelope length, the envelope (the ExecuteRequest or
// ExecuteResponse without its payload field), then the payload's bytes as
// they are. The payload is never copied into the encoded message: a sender
// hands it to the transport as the frame's Body, and a receiver's payload
// aliases the received frame.
const envelopeLenSize = 4

// PutExecuteRequest makes f an EXECUTE_REQUEST carrying r, encoded into
// buf's storage, and returns that buffer for reuse once f is written.
// Split, f.Payload is the envelope and f.Body is r.Payload itself;
// otherwise f.Payload is the whole message.
func PutExecuteRequest(f *wire.Frame, buf []byte, r *ExecuteRequest, split bool) []byte {
	f.Type = wire.TypeExecuteRequest
	if !split {
		buf = AppendExecuteRequest(buf[:0], r)
		f.Payload, f.Body = buf, nil
		return buf
	}
	env := *r
	env.Payload = nil
	buf = AppendExecuteRequest(append(buf[:0], 0, 0, 0, 0), &env)
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-envelopeLenSize))
	f.Flags |= wire.FlagSplit
	f.Payload, f.Body = buf, r.Payload
	return buf
}

// PutExecuteResponse makes f an EXECUTE_RESPONSE carrying payload and
// metadata, as PutExecuteRequest does for a request.
func PutExecuteResponse(f *wire.Frame, buf, payload []byte, metadata map[string]string, split bool) []byte {
	f.Type = wire.TypeExecuteResponse
	if !split {
		buf = AppendExecuteResponse(buf[:0], payload, metadata)
		f.Payload, f.Body = buf, nil
		return buf
	}
	buf = AppendExecuteResponse(append(buf[:0], 0, 0, 0, 0), nil, metadata)
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-envelopeLenSize))
	f.Flags |= wire.FlagSplit
	f.Payload, f.Body = buf, payload
	return buf
}

// ExecuteRequestOf decodes the EXECUTE_REQUEST f in either layout. The
// payload aliases f.Payload.
func ExecuteRequestOf(f *wire.Frame) (ExecuteRequest, error) {
	if f.Flags&wire.FlagSplit == 0 {
		return DecodeExecuteRequest(f.Payload)
	}
	env, body, err := splitPayload(f.Payload)
	if err != nil {
		return ExecuteRequest{}, decodeErr(wire.TypeExecuteRequest, err)
	}
	r, err := DecodeExecuteRequest(env)
	if err != nil {
		return ExecuteRequest{}, err
	}
	if r.Payload != nil {
		return ExecuteRequest{}, decodeErr(wire.TypeExecuteRequest, errPayloadInEnvelope)
	}
	r.Payload = body
	return r, nil
}

// ExecuteResponseOf decodes the EXECUTE_RESPONSE f in either layout. The
// payload aliases f.Payload.
func ExecuteResponseOf(f *wire.Frame) (payload []byte, metadata map[string]string, err error) {
	if f.Flags&wire.FlagSplit == 0 {
		return DecodeExecuteResponse(f.Payload)
	}
	env, body, err := splitPayload(f.Payload)
	if err != nil {
		return nil, nil, decodeErr(wire.TypeExecuteResponse, err)
	}
	if payload, metadata, err = DecodeExecuteResponse(env); err != nil {
		return nil, nil, err
	}
	if payload != nil {
		return nil, nil, decodeErr(wire.TypeExecuteResponse, errPayloadInEnvelope)
	}
	return body, metadata, nil
}

var (
	errShortSplit        = errors.New("split payload shorter than its envelope length")
	errPayloadInEnvelope = errors.New("split envelope has a payload field")
)

// splitPayload cuts a split payload into its envelope and body.
func splitPayload(b []byte) (env, body []byte, err error) {
	if len(b) < envelopeLenSize {
		return nil, nil, errShortSplit
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-envelopeLenSize) {
		return nil, nil, errShortSplit
	}
	end := envelopeLenSize + int(n)
	return b[envelopeLenSize:end], b[end:], nil
}

func appendMap(dst []byte, num protowire.Number, m map[string]string) []byte {
	for k, v := range m {
		size := protowire.SizeTag(entryKey) + protowire.SizeBytes(len(k)) +
			protowire.SizeTag(entryValue) + protowire.SizeBytes(len(v))
		dst = protowire.AppendTag(dst, num, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(size))
		dst = protowire.AppendTag(dst, entryKey, protowire.BytesType)
		dst = protowire.AppendString(dst, k)
		dst = protowire.AppendTag(dst, entryValue, protowire.BytesType)
		dst = protowire.AppendString(dst, v)
	}
	return dst
}

func decodeEntry(b []byte, m *map[string]string) error {
	var k, v string
	err := walk(b, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
		switch {
		case num == entryKey && typ == protowire.BytesType:
			k = string(val)
		case num == entryValue && typ == protowire.BytesType:
			v = string(val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[k] = v
	return nil
}

// walk calls field for every field of the message in b: with its bytes for
// length-delimited fields, its value for varints. Other wire types are
// skipped, as unknown fields are.
func walk(b []byte, field func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var err error
		switch typ {
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			err, n = field(num, typ, v, 0), m
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			err, n = field(num, typ, nil, v), m
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// maxPooled is the largest buffer kept for reuse, so one huge payload does
// not pin its memory.
const maxPooled = 4 << 20

var pool = sync.Pool{New: func() any { return new([]byte) }}

// Buffer returns an empty buffer from a pool; give it back with Release
// once nothing refers to it.
func Buffer() *[]byte { return pool.Get().(*[]byte) }

// Release returns b to the pool.
func Release(b *[]byte) {
	if cap(*b) > maxPooled {
		return
	}
	*b = (*b)[:0]
	pool.Put(b)
}
