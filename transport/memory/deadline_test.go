package memory_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/spear-go/spear/transport/memory"
	"github.com/spear-go/spear/wire"
)

// A read deadline ends a waiting ReadFrame without losing the frames that
// come after it, and a moved or removed deadline lets reads wait again.
func TestReadDeadline(t *testing.T) {
	a, b := memory.Pipe()
	defer a.Close()
	defer b.Close()
	if err := a.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := a.ReadFrame(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrame past the deadline: %v", err)
	}
	if waited := time.Since(start); waited < 15*time.Millisecond {
		t.Errorf("ReadFrame returned after %s, before the deadline", waited)
	}
	if _, err := a.ReadFrame(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a passed deadline stays passed: %v", err)
	}
	_ = a.SetReadDeadline(time.Time{})
	if a.Buffered() {
		t.Error("Buffered with nothing written")
	}
	if err := b.WriteFrame(&wire.Frame{Type: wire.TypeMessage, Payload: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	if !a.Buffered() {
		t.Error("not Buffered with a frame written")
	}
	if f, err := a.ReadFrame(); err != nil || string(f.Payload) != "after" {
		t.Fatalf("ReadFrame after the deadline was removed: %q, %v", f.Payload, err)
	}
	// A deadline set in the past wakes a reader that is already waiting.
	done := make(chan error, 1)
	go func() { _, err := a.ReadFrame(); done <- err }()
	time.Sleep(10 * time.Millisecond)
	_ = a.SetReadDeadline(time.Unix(1, 0))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("woken reader: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a past deadline did not wake the waiting reader")
	}
}
