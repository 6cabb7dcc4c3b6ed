package transport_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// socketPair returns the two ends of a connected unix stream socket, the
// kind of connection StreamConn writes to with writev.
func socketPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int, name string) net.Conn {
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	return conn(fds[0], "a"), conn(fds[1], "b")
}

func streamPair(t testing.TB, writeTimeout time.Duration) (*transport.StreamConn, *transport.StreamConn) {
	a, b := socketPair(t)
	info := transport.Info{Transport: "test", PeerPID: -1, PeerUID: -1}
	return transport.NewStreamConn(a, info, 0, writeTimeout), transport.NewStreamConn(b, info, 0, writeTimeout)
}

// fill writes a pattern into p that depends on the writer and sequence
// number, so a frame delivered to the wrong place or torn shows.
func fill(p []byte, writer, seq int) {
	for i := range p {
		p[i] = byte(writer*31 + seq*7 + i)
	}
}

func TestStreamConnGroupCommitUnderConcurrency(t *testing.T) {
	w, r := streamPair(t, 0)
	const writers, perWriter = 12, 40
	sizes := []int{0, 1, 100, 4096, 4097, 20000, 70000}

	type result struct {
		n   int
		err error
	}
	got := make(chan result, 1)
	go func() {
		next := make([]int, writers)
		want := make([]byte, 70000)
		for n := 0; n < writers*perWriter; n++ {
			f, err := r.ReadFrame()
			if err != nil {
				got <- result{n, err}
				return
			}
			writer, seq := int(f.ID>>32), int(uint32(f.ID))
			if writer >= writers || seq != next[writer] {
				got <- result{n, fmt.Errorf("frame %d: writer %d seq %d, want seq %d", n, writer, seq, next[writer])}
				return
			}
			next[writer]++
			size := sizes[(writer+seq)%len(sizes)]
			fill(want[:size], writer, seq)
			if f.Type != wire.TypeStreamData || f.Flags != wire.FlagEnd || !bytes.Equal(f.Payload, want[:size]) {
				got <- result{n, fmt.Errorf("writer %d seq %d: frame %s flags %d with %d payload bytes is not what was sent",
					writer, seq, f.Type, f.Flags, len(f.Payload))}
				return
			}
		}
		got <- result{writers * perWriter, nil}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for writer := range writers {
		wg.Go(func() {
			// One buffer per writer, overwritten after every WriteFrame:
			// a frame must be on its way before WriteFrame returns.
			buf := make([]byte, 70000)
			for seq := range perWriter {
				p := buf[:sizes[(writer+seq)%len(sizes)]]
				fill(p, writer, seq)
				f := &wire.Frame{Type: wire.TypeStreamData, Flags: wire.FlagEnd, ID: uint64(writer)<<32 | uint64(seq), Payload: p}
				if err := w.WriteFrame(f); err != nil {
					errs <- err
					return
				}
				clear(p)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("WriteFrame: %v", err)
	}
	select {
	case res := <-got:
		if res.err != nil {
			t.Fatalf("after %d good frames: %v", res.n, res.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("reader did not get every frame")
	}
}

func TestStreamConnWriteErrorReachesEveryWriter(t *testing.T) {
	// The peer never reads, so the first writer blocks in writev until the
	// write deadline; the others queue behind it in the same group.
	w, _ := streamPair(t, 100*time.Millisecond)
	const writers = 8
	errs := make(chan error, writers)
	big := make([]byte, 4<<20) // more than a socket buffer holds
	for range writers {
		go func() { errs <- w.WriteFrame(&wire.Frame{Type: wire.TypeStreamData, Payload: big}) }()
	}
	timeout := time.After(30 * time.Second)
	for i := range writers {
		select {
		case err := <-errs:
			if !errors.Is(err, spear.ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("writer %d: %v, want a write timeout matching spear.ErrTimeout", i, err)
			}
		case <-timeout:
			t.Fatalf("only %d of %d writers returned", i, writers)
		}
	}
	// The connection is dead for writing from then on.
	if err := w.WriteFrame(&wire.Frame{Type: wire.TypeHeartbeat}); !errors.Is(err, spear.ErrTimeout) {
		t.Errorf("write after a failed write: %v, want the first error again", err)
	}
}

func TestStreamConnWriteToClosedPeer(t *testing.T) {
	w, r := streamPair(t, 0)
	r.Close()
	const writers = 8
	errs := make(chan error, writers)
	payload := make([]byte, 64<<10)
	for range writers {
		go func() {
			var err error
			for err == nil { // the first few frames may still fit the buffer
				err = w.WriteFrame(&wire.Frame{Type: wire.TypeStreamData, Payload: payload})
			}
			errs <- err
		}()
	}
	for range writers {
		if err := <-errs; !errors.Is(err, spear.ErrChannelClosed) {
			t.Errorf("write to a closed peer: %v, want spear.ErrChannelClosed", err)
		}
	}
}

func TestStreamConnReadEnds(t *testing.T) {
	t.Run("peer closes", func(t *testing.T) {
		w, r := streamPair(t, 0)
		if err := w.WriteFrame(&wire.Frame{Type: wire.TypeMessage, ID: 7, Payload: []byte("last")}); err != nil {
			t.Fatal(err)
		}
		w.Close()
		f, err := r.ReadFrame()
		if err != nil || f.ID != 7 || string(f.Payload) != "last" {
			t.Fatalf("got %+v, %v; want the frame written before close", f, err)
		}
		if _, err := r.ReadFrame(); !errors.Is(err, spear.ErrChannelClosed) {
			t.Fatalf("read after the peer closed: %v, want spear.ErrChannelClosed", err)
		}
	})
	t.Run("own close unblocks read", func(t *testing.T) {
		_, r := streamPair(t, 0)
		errc := make(chan error, 1)
		go func() { _, err := r.ReadFrame(); errc <- err }()
		r.Close()
		if err := r.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := <-errc; !errors.Is(err, spear.ErrChannelClosed) {
			t.Fatalf("blocked read after Close: %v, want spear.ErrChannelClosed", err)
		}
	})
	t.Run("oversized frame", func(t *testing.T) {
		a, b := socketPair(t)
		r := transport.NewStreamConn(b, transport.Info{}, 64, 0)
		w := transport.NewStreamConn(a, transport.Info{}, 0, 0)
		if err := w.WriteFrame(&wire.Frame{Type: wire.TypeMessage, Payload: make([]byte, 65)}); err != nil {
			t.Fatal(err)
		}
		var tooLarge *wire.FrameTooLargeError
		if _, err := r.ReadFrame(); !errors.As(err, &tooLarge) || tooLarge.Length != 65 {
			t.Fatalf("oversized frame: %v, want a *wire.FrameTooLargeError for 65 bytes", err)
		}
	})
}

func TestStreamConnWritesWireFormat(t *testing.T) {
	// A raw reader sees exactly the documented header and payload.
	a, b := socketPair(t)
	w := transport.NewStreamConn(a, transport.Info{Transport: "test", PeerPID: 5}, 0, 0)
	if info := w.Info(); info.Transport != "test" || info.PeerPID != 5 {
		t.Errorf("Info() = %+v, want what NewStreamConn was given", info)
	}
	if err := w.WriteFrame(&wire.Frame{Type: wire.TypeExecuteRequest, Flags: wire.FlagStream, ID: 0x0102030405060708, Payload: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, wire.HeaderSize+2)
	if _, err := io.ReadFull(b, raw); err != nil {
		t.Fatal(err)
	}
	if n := binary.BigEndian.Uint32(raw[0:4]); n != 2 || raw[4] != wire.Version || wire.Type(raw[5]) != wire.TypeExecuteRequest ||
		wire.Flags(binary.BigEndian.Uint16(raw[6:8])) != wire.FlagStream || binary.BigEndian.Uint64(raw[8:16]) != 0x0102030405060708 ||
		string(raw[16:]) != "hi" {
		t.Fatalf("bytes on the wire: % x", raw)
	}
}

func TestStreamConnWriteTimeoutAgainstSilentPeer(t *testing.T) {
	w, _ := streamPair(t, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		p := make([]byte, 64<<10)
		for ctx.Err() == nil {
			if err := w.WriteFrame(&wire.Frame{Type: wire.TypeStreamData, Payload: p}); err != nil {
				errc <- err
				return
			}
		}
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, spear.ErrTimeout) {
			t.Fatalf("write to a peer that never reads: %v, want spear.ErrTimeout", err)
		}
	case <-ctx.Done():
		t.Fatal("writes to a peer that never reads did not time out")
	}
}
