package wire_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"testing"
	"testing/iotest"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/wire"
)

// endless supplies zero bytes forever and counts how many it supplied: a
// peer that would follow its length prefix with 4 GiB of payload.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	clear(p)
	e.n += len(p)
	return len(p), nil
}

// TestOversizedPrefixNotAllocated sends a 4 GiB length prefix backed by a
// source that really would supply 4 GiB: the reader must refuse it from the
// header alone, reading and allocating next to nothing.
func TestOversizedPrefixNotAllocated(t *testing.T) {
	src := &endless{}
	r := wire.NewReader(io.MultiReader(bytes.NewReader(header(0xFFFFFFF0, 1, byte(wire.TypeExecuteRequest), 0, 1)), src), 1024)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := r.ReadFrame()
	runtime.ReadMemStats(&after)

	var tl *wire.FrameTooLargeError
	if !errors.As(err, &tl) || tl.Length != 0xFFFFFFF0 || tl.Max != 1024 {
		t.Fatalf("got %v, want a FrameTooLargeError for 0xFFFFFFF0 over 1024", err)
	}
	if !errors.Is(err, spear.ErrInvalidMessage) {
		t.Errorf("%v does not match spear.ErrInvalidMessage", err)
	}
	// The reader's own buffer is a few KiB; anything near the announced
	// size means the payload was allocated.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("reading the header allocated %d bytes", grew)
	}
	if src.n > 64<<10 {
		t.Errorf("the reader consumed %d payload bytes of a refused frame", src.n)
	}
}

// TestDefaultLimit checks that a zero limit means DefaultMaxPayload.
func TestDefaultLimit(t *testing.T) {
	r := wire.NewReader(bytes.NewReader(header(wire.DefaultMaxPayload+1, 1, 4, 0, 1)), 0)
	var tl *wire.FrameTooLargeError
	if _, err := r.ReadFrame(); !errors.As(err, &tl) || tl.Max != wire.DefaultMaxPayload {
		t.Fatalf("got %v, want a FrameTooLargeError with Max %d", err, wire.DefaultMaxPayload)
	}
}

func TestReaderBadHeaders(t *testing.T) {
	t.Run("version", func(t *testing.T) {
		r := wire.NewReader(bytes.NewReader(header(0, 2, 4, 0, 1)), 64)
		var ve *wire.VersionError
		if _, err := r.ReadFrame(); !errors.As(err, &ve) || ve.Got != 2 {
			t.Fatalf("got %v, want a VersionError for version 2", err)
		}
	})
	t.Run("unknown type", func(t *testing.T) {
		r := wire.NewReader(bytes.NewReader(header(0, 1, 99, 0, 1)), 64)
		_, err := r.ReadFrame()
		var ve *wire.VersionError
		var tl *wire.FrameTooLargeError
		if !errors.Is(err, spear.ErrInvalidMessage) || errors.As(err, &ve) || errors.As(err, &tl) {
			t.Fatalf("got %v, want a plain ErrInvalidMessage", err)
		}
	})
}

func TestReaderTruncated(t *testing.T) {
	full := wire.AppendFrame(nil, &wire.Frame{Type: wire.TypeMessage, ID: 7, Payload: []byte("0123456789")})
	for _, n := range []int{1, 5, wire.HeaderSize - 1, wire.HeaderSize, wire.HeaderSize + 3, len(full) - 1} {
		for _, oneByte := range []bool{false, true} {
			var src io.Reader = bytes.NewReader(full[:n])
			if oneByte {
				src = iotest.OneByteReader(src)
			}
			_, err := wire.NewReader(src, 64).ReadFrame()
			if !errors.Is(err, spear.ErrInvalidMessage) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%d of %d bytes (one at a time: %v): got %v, want ErrInvalidMessage and io.ErrUnexpectedEOF",
					n, len(full), oneByte, err)
			}
			if errors.Is(err, io.EOF) {
				t.Errorf("%d of %d bytes: a truncated frame must not look like a clean io.EOF", n, len(full))
			}
		}
	}
	// Truncated after a complete frame: the first frame is fine.
	r := wire.NewReader(bytes.NewReader(append(bytes.Clone(full), full[:4]...)), 64)
	if _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestReaderCleanEOF(t *testing.T) {
	if _, err := wire.NewReader(bytes.NewReader(nil), 64).ReadFrame(); err != io.EOF {
		t.Fatalf("empty stream: got %v, want io.EOF", err)
	}
	// io.EOF together with the last bytes (as iotest.DataErrReader does).
	b := wire.AppendFrame(nil, &wire.Frame{Type: wire.TypeHeartbeat, ID: 3})
	r := wire.NewReader(iotest.DataErrReader(bytes.NewReader(b)), 64)
	if f, err := r.ReadFrame(); err != nil || f.Type != wire.TypeHeartbeat || f.ID != 3 {
		t.Fatalf("got %v %v", f, err)
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("between frames: got %v, want io.EOF", err)
	}
}

// TestReaderPassesOtherErrors checks that a transport failure is not
// dressed up as a protocol violation.
func TestReaderPassesOtherErrors(t *testing.T) {
	boom := errors.New("boom")
	b := wire.AppendFrame(nil, &wire.Frame{Type: wire.TypeMessage, Payload: []byte("xyz")})
	for _, n := range []int{0, 4, wire.HeaderSize + 1} {
		r := wire.NewReader(io.MultiReader(bytes.NewReader(b[:n]), iotest.ErrReader(boom)), 64)
		_, err := r.ReadFrame()
		if !errors.Is(err, boom) || errors.Is(err, spear.ErrInvalidMessage) {
			t.Errorf("after %d bytes: got %v, want boom and not ErrInvalidMessage", n, err)
		}
	}
}

// TestReaderManyFrames reads a run of frames from one buffer, in one read
// and a byte at a time, and checks that payloads do not alias the reader's
// buffer.
func TestReaderManyFrames(t *testing.T) {
	var buf []byte
	var want []wire.Frame
	for i := range 200 {
		f := wire.Frame{Type: wire.TypeStreamData, ID: uint64(i), Payload: bytes.Repeat([]byte{byte(i)}, i%40)}
		want = append(want, f)
		buf = wire.AppendFrame(buf, &f)
	}
	for _, oneByte := range []bool{false, true} {
		var src io.Reader = bytes.NewReader(buf)
		if oneByte {
			src = iotest.OneByteReader(src)
		}
		r := wire.NewReader(src, 64)
		var got []wire.Frame
		for {
			f, err := r.ReadFrame()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, f)
		}
		if len(got) != len(want) {
			t.Fatalf("read %d frames, want %d", len(got), len(want))
		}
		// Checked only after everything was read: a payload that
		// aliased the read buffer would have been overwritten.
		for i := range want {
			assertFrame(t, got[i], want[i])
		}
	}
}

// TestReaderLargePayload reads payloads larger than the reader's internal
// buffer, mixed with small frames before and after them.
func TestReaderLargePayload(t *testing.T) {
	big := make([]byte, 100_000)
	for i := range big {
		big[i] = byte(i * 7)
	}
	frames := []wire.Frame{
		{Type: wire.TypeMessage, ID: 1, Payload: []byte("small")},
		{Type: wire.TypeExecuteResponse, ID: 2, Payload: big},
		{Type: wire.TypeMessage, ID: 3, Payload: []byte("after")},
		{Type: wire.TypeExecuteResponse, ID: 4, Payload: big[:4000]},
		{Type: wire.TypeCancel, ID: 5},
	}
	var buf []byte
	for i := range frames {
		buf = wire.AppendFrame(buf, &frames[i])
	}
	for _, oneByte := range []bool{false, true} {
		var src io.Reader = bytes.NewReader(buf)
		if oneByte {
			src = iotest.HalfReader(src)
		}
		r := wire.NewReader(src, uint32(len(big)))
		for _, want := range frames {
			got, err := r.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			assertFrame(t, got, want)
		}
		if _, err := r.ReadFrame(); err != io.EOF {
			t.Fatalf("got %v, want io.EOF", err)
		}
	}
}

// deadlineReader hands out its chunks one read at a time, failing every
// other read with a deadline error, as a connection whose read deadline
// keeps passing does.
type deadlineReader struct {
	chunks [][]byte
	fail   bool
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.fail = !d.fail; d.fail {
		return 0, os.ErrDeadlineExceeded
	}
	if len(d.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, d.chunks[0])
	if d.chunks[0] = d.chunks[0][n:]; len(d.chunks[0]) == 0 {
		d.chunks = d.chunks[1:]
	}
	return n, nil
}

// A read deadline that passes inside a frame, in its header or its
// payload, loses nothing: the next ReadFrame resumes it.
func TestReaderResumesAfterDeadline(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4096) // read straight into the payload
	enc := wire.AppendFrame(nil, &wire.Frame{Type: wire.TypeStreamData, ID: 7, Payload: payload})
	enc = wire.AppendFrame(enc, &wire.Frame{Type: wire.TypeMessage, Payload: []byte("next")})
	var chunks [][]byte
	for _, n := range []int{5, 20, 1000, 30000} { // cuts in the header, then the payload
		chunks, enc = append(chunks, enc[:n]), enc[n:]
	}
	chunks = append(chunks, enc)
	r := wire.NewReader(&deadlineReader{chunks: chunks}, 0)
	var got []wire.Frame
	for deadlines := 0; len(got) < 2; {
		f, err := r.ReadFrame()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if deadlines++; deadlines > 100 {
				t.Fatal("no progress")
			}
		case err != nil:
			t.Fatalf("ReadFrame: %v", err)
		default:
			got = append(got, f)
		}
	}
	if got[0].ID != 7 || !bytes.Equal(got[0].Payload, payload) || string(got[1].Payload) != "next" {
		t.Fatalf("frames after deadlines: id %d, %d payload bytes, then %q", got[0].ID, len(got[0].Payload), got[1].Payload)
	}
}

// Released payloads are reused by the next frame of their size class.
func TestPayloadPool(t *testing.T) {
	var f wire.Frame
	p := f.NewPayload(3000)
	if len(p) != 3000 || cap(p) != 4096 {
		t.Fatalf("NewPayload(3000): len %d cap %d, want 3000 in a 4096 class", len(p), cap(p))
	}
	f.Release()
	if f.Payload != nil {
		t.Error("Release left the payload")
	}
	f.Release() // a second release does nothing
	if n := len(new(wire.Frame).NewPayload(1 << 25)); n != 1<<25 {
		t.Errorf("a payload over the largest class: %d bytes", n)
	}
	if p := new(wire.Frame).NewPayload(0); p != nil {
		t.Errorf("an empty payload is %v, want nil", p)
	}
}
