package transport_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
)

func TestFilterCloseErr(t *testing.T) {
	other := errors.New("something else")
	tests := []struct {
		name   string
		err    error
		closed bool
	}{
		{"EOF", io.EOF, true},
		{"wrapped EOF", fmt.Errorf("read: %w", io.EOF), true},
		{"net.ErrClosed", &net.OpError{Op: "read", Net: "unix", Err: net.ErrClosed}, true},
		{"EPIPE", &net.OpError{Op: "write", Net: "unix", Err: os.NewSyscallError("write", syscall.EPIPE)}, true},
		{"ECONNRESET", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{"closed pipe", io.ErrClosedPipe, true},
		{"unexpected EOF", io.ErrUnexpectedEOF, false},
		{"deadline", os.ErrDeadlineExceeded, false},
		{"ECONNREFUSED", os.NewSyscallError("connect", syscall.ECONNREFUSED), false},
		{"other", other, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := transport.FilterCloseErr(tt.err)
			if tt.closed {
				if !errors.Is(got, spear.ErrChannelClosed) || !errors.Is(got, tt.err) {
					t.Fatalf("FilterCloseErr(%v) = %v, want spear.ErrChannelClosed keeping the cause", tt.err, got)
				}
				return
			}
			if got != tt.err {
				t.Fatalf("FilterCloseErr(%v) = %v, want it unchanged", tt.err, got)
			}
		})
	}
	if transport.FilterCloseErr(nil) != nil {
		t.Error("FilterCloseErr(nil) is not nil")
	}
	closed := fmt.Errorf("%w: already", spear.ErrChannelClosed)
	if got := transport.FilterCloseErr(closed); got != closed {
		t.Errorf("an error already matching ErrChannelClosed was rewrapped: %v", got)
	}
}
