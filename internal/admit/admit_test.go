package admit_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spear-go/spear/internal/admit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTimeout = 20 * time.Second

// pair accepts one connection on l from a fresh client and returns both
// ends.
func pair(t *testing.T, l *admit.Listener) (server *admit.Conn, client net.Conn) {
	t.Helper()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*admit.Conn), client
}

// closedBy reports whether the client sees its connection closed by the
// server within d.
func closedBy(t *testing.T, client net.Conn, d time.Duration) bool {
	t.Helper()
	_ = client.SetReadDeadline(time.Now().Add(d))
	_, err := client.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	if err != io.EOF && !errors.Is(err, net.ErrClosed) {
		t.Logf("read: %v", err)
	}
	return true
}

func listen(t *testing.T, timeout time.Duration) *admit.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := admit.NewListener(ln, timeout)
	t.Cleanup(func() { l.Close() })
	return l
}

func TestSilentConnectionDropped(t *testing.T) {
	l := listen(t, 100*time.Millisecond)
	_, client := pair(t, l)
	if !closedBy(t, client, testTimeout) {
		t.Fatal("a silent connection outlived its deadline")
	}
}

func TestAdmittedConnectionStays(t *testing.T) {
	l := listen(t, 100*time.Millisecond)
	_, client := pair(t, l)
	l.Admit(client.LocalAddr()) // the server sees the client's local address as remote
	if closedBy(t, client, 500*time.Millisecond) {
		t.Fatal("an admitted connection was dropped")
	}
}

func TestHeldConnectionStaysThenExpires(t *testing.T) {
	l := listen(t, 100*time.Millisecond)
	_, client := pair(t, l)
	release := l.Hold(client.LocalAddr())
	if closedBy(t, client, 400*time.Millisecond) {
		t.Fatal("a held connection was dropped")
	}
	inner := l.Hold(client.LocalAddr()) // holds nest
	release()
	release() // a second call does nothing
	if closedBy(t, client, 300*time.Millisecond) {
		t.Fatal("a connection still held once was dropped")
	}
	inner()
	if !closedBy(t, client, testTimeout) {
		t.Fatal("a released connection outlived its fresh deadline")
	}
}

func TestUnknownRemoteIgnored(t *testing.T) {
	l := listen(t, time.Hour)
	l.Admit(nil)
	l.Admit(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1})
	l.Hold(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1})()
	c, client := pair(t, l)
	c.Close()
	l.Admit(client.LocalAddr()) // closed: forgotten
	if !closedBy(t, client, testTimeout) {
		t.Fatal("closed connection still open")
	}
}
