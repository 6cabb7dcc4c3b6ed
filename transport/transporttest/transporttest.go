// Package transporttest checks that a transport keeps the contract of
// package transport, in the spirit of golang.org/x/net/nettest: every
// transport runs the same suite, from its own tests,
//
//	func TestConformance(t *testing.T) { transporttest.Run(t, unix.Name) }
//
// on connections made through its entry in the transport table (Listen,
// then Dial to the listener's address). The suite checks frame round trips
// both ways, concurrent writers, close from each side, the write deadline,
// oversized frames, and a peer that stops reading.
//
// The contract, beyond what package transport's doc comments say, that the
// suite holds a transport to:
//
//   - A frame arrives whole and unchanged, its payload owned by the reader;
//     the writer may reuse its payload once WriteFrame returns.
//   - Frames of one writer arrive in order; concurrent writers never tear
//     or interleave frames.
//   - After Close, ReadFrame and WriteFrame fail with an error matching
//     spear.ErrChannelClosed, a blocked ReadFrame included; Close may be
//     called again. A peer that keeps reading gets the frames written
//     before the Close, then fails the same way; its writes fail too.
//   - A payload over the reader's MaxPayload fails ReadFrame with a
//     *wire.FrameTooLargeError (for transports that encode frames; an
//     in-process transport may have no limit).
//   - Writes to a peer that stops reading are held back, not buffered
//     without bound; the writer is released with an error matching
//     spear.ErrTimeout once the WriteTimeout has passed (the connection is
//     dead after it), or spear.ErrChannelClosed when either end closes.
package transporttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// timeout bounds every wait of the suite: generous for a loaded machine,
// never expected to be reached by a transport that works.
const timeout = 30 * time.Second

// Config is what the suite makes a connection with.
type Config struct {
	MaxPayload   uint32        // both ends' limit on incoming payloads
	WriteTimeout time.Duration // both ends' bound on a write to a peer not reading
}

// Pipe returns the two ends of a new connection over the transport
// registered as name, made with cfg: the end its listener accepted (the
// agent's) and the end that dialed (the instance's). Both ends and the
// listener are closed when the test ends.
func Pipe(t testing.TB, name string, cfg Config) (accepted, dialed transport.Conn) {
	t.Helper()
	tr, err := transport.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "tt-") // short: unix socket paths are
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var n atomic.Int64
	ln, err := tr.Listen(transport.ListenConfig{
		Path:         func() (string, error) { return filepath.Join(dir, strconv.FormatInt(n.Add(1), 10)), nil },
		MaxPayload:   cfg.MaxPayload,
		WriteTimeout: cfg.WriteTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	type result struct {
		c   transport.Conn
		err error
	}
	acc := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		acc <- result{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	dialed, err = tr.Dial(ctx, ln.Addr(), transport.DialConfig{MaxPayload: cfg.MaxPayload, WriteTimeout: cfg.WriteTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dialed.Close() })
	// Some transports (grpc) hand a connection to Accept only once its
	// first frame arrives; others (net.Pipe) finish a write only as the
	// peer reads it.
	hello := &wire.Frame{Type: wire.TypeHeartbeat, ID: 1}
	wrote := make(chan error, 1)
	go func() { wrote <- dialed.WriteFrame(hello) }()
	var r result
	select {
	case r = <-acc:
	case <-ctx.Done():
		t.Fatal("the listener did not accept the connection")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	if f, err := r.c.ReadFrame(); err != nil || f.Type != hello.Type || f.ID != hello.ID {
		t.Fatalf("first frame: %+v, %v", f, err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if got := r.c.Info().Transport; got != name {
		t.Errorf("accepted connection's Info().Transport = %q, want %q", got, name)
	}
	if got := dialed.Info().Transport; got != name {
		t.Errorf("dialed connection's Info().Transport = %q, want %q", got, name)
	}
	return r.c, dialed
}

// Run runs the conformance suite on the transport registered as name.
func Run(t *testing.T, name string) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, string)
	}{
		{"RoundTrip", testRoundTrip},
		{"ConcurrentWriters", testConcurrentWriters},
		{"CloseUnblocksRead", testCloseUnblocksRead},
		{"CloseFromEachSide", testCloseFromEachSide},
		{"OversizedFrame", testOversizedFrame},
		{"WriteDeadline", testWriteDeadline},
		{"PeerStopsReading", testPeerStopsReading},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, name) })
	}
}

// eachDirection runs fn as a subtest for each direction, on a fresh
// connection made with cfg: w writes, r reads.
func eachDirection(t *testing.T, name string, cfg Config, fn func(t *testing.T, w, r transport.Conn)) {
	for _, dir := range []string{"accepted writes", "dialed writes"} {
		t.Run(dir, func(t *testing.T) {
			a, b := Pipe(t, name, cfg)
			if dir == "dialed writes" {
				a, b = b, a
			}
			fn(t, a, b)
		})
	}
}

// fill writes a pattern that depends on seed, so a frame delivered to the
// wrong place, torn or changed shows.
func fill(p []byte, seed uint64) []byte {
	for i := range p {
		p[i] = byte(seed*131 + uint64(i)*7 + uint64(i>>8))
	}
	return p
}

func testRoundTrip(t *testing.T, name string) {
	sizes := []int{0, 1, 100, 4096, 4097, 65536, 300 << 10, 1 << 20}
	eachDirection(t, name, Config{MaxPayload: 1 << 20}, func(t *testing.T, w, r transport.Conn) {
		for i, size := range sizes {
			id := uint64(i)<<40 | 0xABCDEF
			payload := fill(make([]byte, size), id)
			sent := wire.Frame{Type: wire.TypeStreamData, Flags: wire.FlagStream | wire.FlagEnd, ID: id, Payload: payload}
			if i%2 == 1 {
				sent.Type, sent.Flags = wire.TypeExecuteRequest, 0
			}
			// The reader runs meanwhile: a transport may hand a large
			// frame over only as the peer reads.
			type result struct {
				f   wire.Frame
				err error
			}
			got := make(chan result, 1)
			go func() {
				f, err := r.ReadFrame()
				got <- result{f, err}
			}()
			if err := w.WriteFrame(&sent); err != nil {
				t.Fatalf("write %d bytes: %v", size, err)
			}
			// The payload is the writer's again once WriteFrame returns.
			clear(payload)
			res := <-got
			if res.err != nil {
				t.Fatalf("read %d bytes: %v", size, res.err)
			}
			f := res.f
			if f.Type != sent.Type || f.Flags != sent.Flags || f.ID != id || !bytes.Equal(f.Payload, fill(make([]byte, size), id)) {
				t.Fatalf("sent %s flags %d id %x with %d bytes; got %s flags %d id %x with %d bytes (or other bytes)",
					sent.Type, sent.Flags, id, size, f.Type, f.Flags, f.ID, len(f.Payload))
			}
		}
	})
}

func testConcurrentWriters(t *testing.T, name string) {
	const writers, each = 8, 40
	sizes := []int{0, 10, 4096, 4097, 70000}
	eachDirection(t, name, Config{MaxPayload: 1 << 20}, func(t *testing.T, w, r transport.Conn) {
		done := make(chan error, 1)
		go func() {
			next := make([]int, writers)
			for range writers * each {
				f, err := r.ReadFrame()
				if err != nil {
					done <- err
					return
				}
				wr, seq := int(f.ID>>32), int(uint32(f.ID))
				if wr >= writers || seq != next[wr] {
					done <- fmt.Errorf("frame %d of writer %d arrived when %v were expected next", seq, wr, next)
					return
				}
				next[wr]++
				if want := fill(make([]byte, sizes[seq%len(sizes)]), f.ID); !bytes.Equal(f.Payload, want) {
					done <- fmt.Errorf("frame %d of writer %d: %d bytes, not as written", seq, wr, len(f.Payload))
					return
				}
			}
			done <- nil
		}()
		var wg sync.WaitGroup
		for wr := range writers {
			wg.Go(func() {
				for seq := range each {
					id := uint64(wr)<<32 | uint64(seq)
					f := &wire.Frame{Type: wire.TypeMessage, ID: id, Payload: fill(make([]byte, sizes[seq%len(sizes)]), id)}
					if err := w.WriteFrame(f); err != nil {
						t.Errorf("writer %d: %v", wr, err)
						return
					}
				}
			})
		}
		wg.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(timeout):
			t.Fatal("the reader did not get every frame")
		}
	})
}

// wantClosed fails the test unless err matches spear.ErrChannelClosed.
func wantClosed(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, spear.ErrChannelClosed) {
		t.Fatalf("%s: %v, want an error matching spear.ErrChannelClosed", what, err)
	}
}

func testCloseUnblocksRead(t *testing.T, name string) {
	eachDirection(t, name, Config{}, func(t *testing.T, c, _ transport.Conn) {
		errc := make(chan error, 1)
		go func() {
			_, err := c.ReadFrame()
			errc <- err
		}()
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		select {
		case err := <-errc:
			wantClosed(t, "ReadFrame blocked across Close", err)
		case <-time.After(timeout):
			t.Fatal("Close did not release a blocked ReadFrame")
		}
		_ = c.Close() // again: no panic, no hang
		wantClosed(t, "WriteFrame after Close", c.WriteFrame(&wire.Frame{Type: wire.TypeMessage}))
		_, err := c.ReadFrame()
		wantClosed(t, "ReadFrame after Close", err)
	})
}

func testCloseFromEachSide(t *testing.T, name string) {
	eachDirection(t, name, Config{}, func(t *testing.T, c, peer transport.Conn) {
		// The peer reads all along, as a session does.
		type result struct {
			frames []wire.Frame
			err    error
		}
		read := make(chan result, 1)
		go func() {
			var r result
			for {
				f, err := peer.ReadFrame()
				if err != nil {
					r.err = err
					read <- r
					return
				}
				r.frames = append(r.frames, f)
			}
		}()
		// What was written before Close arrives, then the end (a CLOSE
		// frame saying goodbye depends on it).
		if err := c.WriteFrame(&wire.Frame{Type: wire.TypeClose, Payload: []byte("bye")}); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		var r result
		select {
		case r = <-read:
		case <-time.After(timeout):
			t.Fatal("the peer's ReadFrame did not end after Close")
		}
		if len(r.frames) != 1 || r.frames[0].Type != wire.TypeClose || string(r.frames[0].Payload) != "bye" {
			t.Fatalf("the peer read %d frames before the end, want the one written before Close", len(r.frames))
		}
		wantClosed(t, "peer's ReadFrame after Close", r.err)
		// Writes to a closed peer fail, at once or after what the kernel
		// had room for.
		deadline := time.Now().Add(timeout)
		for {
			err := peer.WriteFrame(&wire.Frame{Type: wire.TypeMessage, Payload: make([]byte, 1024)})
			if err != nil {
				wantClosed(t, "write to a closed peer", err)
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("writes to a closed peer kept succeeding")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

func testOversizedFrame(t *testing.T, name string) {
	const limit = 1024
	eachDirection(t, name, Config{MaxPayload: limit}, func(t *testing.T, w, r transport.Conn) {
		// A frame at the limit passes.
		go func() { _ = w.WriteFrame(&wire.Frame{Type: wire.TypeMessage, Payload: make([]byte, limit)}) }()
		if f, err := r.ReadFrame(); err != nil || len(f.Payload) != limit {
			t.Fatalf("a payload at the limit: %d bytes, %v", len(f.Payload), err)
		}
		go func() { _ = w.WriteFrame(&wire.Frame{Type: wire.TypeMessage, Payload: make([]byte, limit+1)}) }()
		f, err := r.ReadFrame()
		if err == nil && len(f.Payload) == limit+1 {
			t.Skipf("%s has no payload limit (it does not encode frames)", name)
		}
		var tl *wire.FrameTooLargeError
		if !errors.As(err, &tl) || tl.Length != limit+1 || tl.Max != limit || !errors.Is(err, spear.ErrInvalidMessage) {
			t.Fatalf("a payload over the limit: %v, want *wire.FrameTooLargeError{%d, %d}", err, limit+1, limit)
		}
	})
}

// Writes of a stalled writer: unbounded is the limit a transport must hold
// back at; the writer gives up at most frames, past what a peer's Close may
// still drain (a grpc client reads for up to a second, to let its last
// frames through).
const (
	stallFrame     = 64 << 10
	stallUnbounded = 4096  // 256 MiB
	stallMost      = 16384 // 1 GiB
)

// stall writes frames to w, whose peer does not read, until a write
// fails, and returns that error. written counts the frames that went out.
func stall(w transport.Conn, written *atomic.Int64) error {
	payload := make([]byte, stallFrame)
	for range stallMost {
		if err := w.WriteFrame(&wire.Frame{Type: wire.TypeMessage, Payload: payload}); err != nil {
			return err
		}
		written.Add(1)
	}
	return nil
}

// waitStalled waits until the count of frames written stops moving. A
// writer that gets past stallUnbounded fails the test (and is stopped).
func waitStalled(t *testing.T, w transport.Conn, written *atomic.Int64) {
	t.Helper()
	last, still := int64(-1), 0
	for still < 5 {
		time.Sleep(20 * time.Millisecond)
		n := written.Load()
		if n >= stallUnbounded {
			w.Close()
			t.Fatalf("%d frames of %d bytes went to a peer not reading: the transport buffers without bound", n, stallFrame)
		}
		if n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
}

func testWriteDeadline(t *testing.T, name string) {
	eachDirection(t, name, Config{WriteTimeout: 200 * time.Millisecond}, func(t *testing.T, w, _ transport.Conn) {
		var written atomic.Int64
		done := make(chan error, 1)
		go func() { done <- stall(w, &written) }()
		select {
		case err := <-done:
			if !errors.Is(err, spear.ErrTimeout) {
				t.Fatalf("write to a peer not reading: %v after %d frames, want an error matching spear.ErrTimeout", err, written.Load())
			}
		case <-time.After(timeout):
			t.Fatal("a write to a peer not reading outlived the write timeout")
		}
		// The connection is dead after a write timed out.
		if err := w.WriteFrame(&wire.Frame{Type: wire.TypeMessage}); err == nil {
			t.Fatal("a write succeeded after one timed out")
		}
	})
}

func testPeerStopsReading(t *testing.T, name string) {
	for _, closer := range []string{"writer", "reader"} {
		t.Run(closer+" closes", func(t *testing.T) {
			eachDirection(t, name, Config{}, func(t *testing.T, w, r transport.Conn) {
				var written atomic.Int64
				done := make(chan error, 1)
				go func() { done <- stall(w, &written) }()
				waitStalled(t, w, &written)
				c := w
				if closer == "reader" {
					c = r
				}
				c.Close()
				select {
				case err := <-done:
					if !errors.Is(err, spear.ErrChannelClosed) && !errors.Is(err, spear.ErrTimeout) {
						t.Fatalf("stalled write after Close: %v, want closed or timed out", err)
					}
				case <-time.After(timeout):
					t.Fatalf("Close of the %s did not release a write stalled on a peer not reading", closer)
				}
			})
		})
	}
}
