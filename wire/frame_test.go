package wire_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/wire"
)

// allTypes lists every message type, by its wire value.
func allTypes() []wire.Type {
	var ts []wire.Type
	for v := 1; v <= 12; v++ {
		ts = append(ts, wire.Type(v))
	}
	return ts
}

// TestHeaderLayout pins the byte layout of docs/protocol.md: big-endian
// u32 payload length, u8 version, u8 type, big-endian u16 flags, big-endian
// u64 request id, then the payload.
func TestHeaderLayout(t *testing.T) {
	f := &wire.Frame{
		Type:    wire.TypeStreamData,
		Flags:   wire.FlagEnd | wire.FlagStream,
		ID:      0x0102030405060708,
		Payload: []byte("abc"),
	}
	want := "00000003" + "01" + "06" + "0005" + "0102030405060708" + hex.EncodeToString([]byte("abc"))
	got := hex.EncodeToString(wire.AppendFrame(nil, f))
	if got != want {
		t.Fatalf("encoded frame\n got %s\nwant %s", got, want)
	}
	if f.Size() != 19 {
		t.Errorf("Size() = %d, want 19", f.Size())
	}
	h := make([]byte, wire.HeaderSize)
	wire.PutHeader(h, f)
	if hex.EncodeToString(h) != want[:2*wire.HeaderSize] {
		t.Errorf("PutHeader wrote %x", h)
	}
}

// TestTypeValues pins the message type numbers and names of the spec.
func TestTypeValues(t *testing.T) {
	want := map[wire.Type]string{
		1: "AUTH_CHALLENGE", 2: "AUTH_REQUEST", 3: "AUTH_RESPONSE", 4: "EXECUTE_REQUEST",
		5: "EXECUTE_RESPONSE", 6: "STREAM_DATA", 7: "SIGNAL", 8: "HEARTBEAT", 9: "ERROR",
		10: "CANCEL", 11: "CLOSE", 12: "MESSAGE",
	}
	for ty, name := range want {
		if !ty.Valid() || ty.String() != name {
			t.Errorf("type %d: Valid()=%v String()=%q, want true %q", uint8(ty), ty.Valid(), ty.String(), name)
		}
	}
	for _, v := range []uint8{0, 13, 200, 255} {
		if ty := wire.Type(v); ty.Valid() {
			t.Errorf("type %d is valid", v)
		}
	}
	if wire.FlagEnd != 1 || wire.FlagAck != 2 || wire.FlagStream != 4 {
		t.Errorf("flags are End=%d Ack=%d Stream=%d, want 1 2 4", wire.FlagEnd, wire.FlagAck, wire.FlagStream)
	}
}

// TestRoundTrip encodes every type with a spread of flags, ids and payloads
// and decodes it both whole (Decode) and from a stream (Reader).
func TestRoundTrip(t *testing.T) {
	flags := []wire.Flags{0, wire.FlagEnd, wire.FlagAck, wire.FlagStream, wire.FlagEnd | wire.FlagStream, 0xFFFF}
	ids := []uint64{0, 1, 2, 0xFFFFFFFFFFFFFFFF}
	payloads := [][]byte{nil, {0}, []byte("hello"), bytes.Repeat([]byte{0xAB}, 300)}
	var stream []byte
	var want []wire.Frame
	for _, ty := range allTypes() {
		for _, fl := range flags {
			for _, id := range ids {
				for _, p := range payloads {
					f := wire.Frame{Type: ty, Flags: fl, ID: id, Payload: p}
					b := wire.AppendFrame(nil, &f)
					got, err := wire.Decode(b, 1024)
					if err != nil {
						t.Fatalf("Decode(%v): %v", f, err)
					}
					assertFrame(t, got, f)
					stream = append(stream, b...)
					want = append(want, f)
				}
			}
		}
	}
	r := wire.NewReader(bytes.NewReader(stream), 1024)
	for i, f := range want {
		got, err := r.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		assertFrame(t, got, f)
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func assertFrame(t *testing.T, got, want wire.Frame) {
	t.Helper()
	if got.Type != want.Type || got.Flags != want.Flags || got.ID != want.ID || !bytes.Equal(got.Payload, want.Payload) {
		t.Fatalf("got frame %v %#x %d %q, want %v %#x %d %q",
			got.Type, got.Flags, got.ID, got.Payload, want.Type, want.Flags, want.ID, want.Payload)
	}
	if len(want.Payload) == 0 && got.Payload != nil {
		t.Fatalf("empty payload decoded as non-nil %v", got.Payload)
	}
}

// header builds a raw header, so tests can write what AppendFrame refuses to.
func header(length uint32, version, typ byte, flags uint16, id uint64) []byte {
	h := make([]byte, wire.HeaderSize)
	h[0], h[1], h[2], h[3] = byte(length>>24), byte(length>>16), byte(length>>8), byte(length)
	h[4], h[5] = version, typ
	h[6], h[7] = byte(flags>>8), byte(flags)
	for i := range 8 {
		h[8+i] = byte(id >> (56 - 8*i))
	}
	return h
}

func TestParseHeaderErrors(t *testing.T) {
	tests := []struct {
		name    string
		h       []byte
		max     uint32
		version int    // a *VersionError with this Got; -1 for none
		tooBig  uint32 // a *FrameTooLargeError with this Length, when non-zero
	}{
		{name: "short", h: make([]byte, wire.HeaderSize-1), max: 10, version: -1},
		{name: "version 0", h: header(0, 0, 4, 0, 1), max: 10, version: 0},
		{name: "version 2", h: header(0, 2, 4, 0, 1), max: 10, version: 2},
		{name: "version 255", h: header(0, 255, 4, 0, 1), max: 10, version: 255},
		// The version is checked first: a peer of another version may
		// frame differently, so its length means nothing.
		{name: "version before length", h: header(0xFFFFFFFF, 7, 4, 0, 1), max: 10, version: 7},
		{name: "too large", h: header(11, 1, 4, 0, 1), max: 10, version: -1, tooBig: 11},
		{name: "huge", h: header(0xFFFFFFF0, 1, 4, 0, 1), max: 10, version: -1, tooBig: 0xFFFFFFF0},
		{name: "type 0", h: header(0, 1, 0, 0, 1), max: 10, version: -1},
		{name: "type 13", h: header(0, 1, 13, 0, 1), max: 10, version: -1},
		{name: "type 255", h: header(0, 1, 255, 0, 1), max: 10, version: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := wire.ParseHeader(tt.h, tt.max)
			if !errors.Is(err, spear.ErrInvalidMessage) {
				t.Fatalf("error %v does not match spear.ErrInvalidMessage", err)
			}
			var ve *wire.VersionError
			if got := errors.As(err, &ve); got != (tt.version >= 0) {
				t.Fatalf("error %v: is VersionError = %v", err, got)
			}
			if ve != nil && int(ve.Got) != tt.version {
				t.Errorf("VersionError.Got = %d, want %d", ve.Got, tt.version)
			}
			var tl *wire.FrameTooLargeError
			if got := errors.As(err, &tl); got != (tt.tooBig != 0) {
				t.Fatalf("error %v: is FrameTooLargeError = %v", err, got)
			}
			if tl != nil && (tl.Length != tt.tooBig || tl.Max != tt.max) {
				t.Errorf("FrameTooLargeError = %+v, want Length %d Max %d", tl, tt.tooBig, tt.max)
			}
		})
	}
	// Exactly at the limit is fine.
	if _, err := wire.ParseHeader(header(10, 1, 4, 0, 1), 10); err != nil {
		t.Errorf("payload at the limit: %v", err)
	}
}

func TestDecodeLengthMismatch(t *testing.T) {
	f := wire.Frame{Type: wire.TypeMessage, Payload: []byte("12345")}
	b := wire.AppendFrame(nil, &f)
	for _, bad := range [][]byte{b[:len(b)-1], append(b[:len(b):len(b)], 'x'), b[:wire.HeaderSize]} {
		if _, err := wire.Decode(bad, 100); !errors.Is(err, spear.ErrInvalidMessage) {
			t.Errorf("Decode of %d bytes: %v, want ErrInvalidMessage", len(bad), err)
		}
	}
}

func TestErrorText(t *testing.T) {
	ve := &wire.VersionError{Got: 9}
	tl := &wire.FrameTooLargeError{Length: 100, Max: 10}
	for _, s := range []string{ve.Error(), tl.Error()} {
		if s == "" {
			t.Error("empty error text")
		}
	}
	if !bytes.Contains([]byte(ve.Error()), []byte("9")) || !bytes.Contains([]byte(tl.Error()), []byte("100")) {
		t.Errorf("error texts do not name the offending value: %q, %q", ve.Error(), tl.Error())
	}
}
