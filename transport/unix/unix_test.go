package unix_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	xunix "golang.org/x/sys/unix"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/transport/unix"
	"github.com/spear-go/spear/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// socketDir returns a short private directory: t.TempDir paths, named
// after the test, can exceed what sun_path holds.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := unix.PrivateDir("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestPrivateDirMode(t *testing.T) {
	dir := socketDir(t)
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Fatalf("PrivateDir made %v, want a 0700 directory", st.Mode())
	}
}

func TestListenDialAccept(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	path := filepath.Join(socketDir(t), "a.sock")
	l, err := unix.Listen(path, unix.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket file mode %v, want a 0600 socket", st.Mode())
	}
	if l.Addr() != path {
		t.Errorf("Addr() = %q, want %q", l.Addr(), path)
	}

	accepted := make(chan transport.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	client, err := unix.Dial(ctx, path, unix.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		t.FailNow()
	}
	defer server.Close()

	info := server.Info()
	if info.Transport != unix.Name {
		t.Errorf("Info().Transport = %q", info.Transport)
	}
	sid, _ := xunix.Getsid(0)
	if runtime.GOOS == "linux" && (info.PeerPID != os.Getpid() || info.PeerUID != os.Getuid() || info.PeerSID != sid) {
		t.Errorf("peer credentials pid %d uid %d session %d, want this process's: %d %d %d",
			info.PeerPID, info.PeerUID, info.PeerSID, os.Getpid(), os.Getuid(), sid)
	}

	if err := client.WriteFrame(&wire.Frame{Type: wire.TypeMessage, ID: 2, Payload: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	if f, err := server.ReadFrame(); err != nil || f.ID != 2 || string(f.Payload) != "hello" {
		t.Fatalf("server read %+v, %v", f, err)
	}

	// Closing the listener removes the file but keeps accepted conns.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Close: %v, want it removed", err)
	}
	if _, err := l.Accept(); !errors.Is(err, spear.ErrChannelClosed) {
		t.Errorf("Accept after Close: %v, want spear.ErrChannelClosed", err)
	}
	if err := server.WriteFrame(&wire.Frame{Type: wire.TypeMessage, ID: 4}); err != nil {
		t.Fatalf("accepted conn after listener Close: %v", err)
	}
	if f, err := client.ReadFrame(); err != nil || f.ID != 4 {
		t.Fatalf("client read %+v, %v", f, err)
	}
}

func TestListenRejectsLongPath(t *testing.T) {
	dir := socketDir(t)
	path := filepath.Join(dir, strings.Repeat("x", unix.MaxPathLen+1-len(dir)-1))
	if len(path) != unix.MaxPathLen+1 {
		t.Fatalf("test bug: path is %d bytes", len(path))
	}
	if _, err := unix.Listen(path, unix.Options{}); !errors.Is(err, spear.ErrInvalidConfig) {
		t.Fatalf("Listen on a %d-byte path: %v, want spear.ErrInvalidConfig", len(path), err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a rejected Listen left %s behind", path)
	}
	// The longest allowed path works.
	ok := path[:unix.MaxPathLen]
	l, err := unix.Listen(ok, unix.Options{})
	if err != nil {
		t.Fatalf("Listen on a %d-byte path: %v", len(ok), err)
	}
	l.Close()
}

func TestListenDoesNotReplaceExistingFile(t *testing.T) {
	path := filepath.Join(socketDir(t), "taken")
	if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Listen(path, unix.Options{}); !errors.Is(err, spear.ErrTransport) {
		t.Fatalf("Listen over an existing file: %v, want spear.ErrTransport", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep" {
		t.Fatalf("the existing file was changed: %q, %v", b, err)
	}
}

func TestDialMissingSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := unix.Dial(ctx, filepath.Join(socketDir(t), "none.sock"), unix.Options{})
	if !errors.Is(err, spear.ErrConnectionFailed) {
		t.Fatalf("dial a missing socket: %v, want spear.ErrConnectionFailed", err)
	}
}
