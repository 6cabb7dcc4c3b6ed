// Package unix is the unix-socket transport: one socket file per instance,
// in a directory only the agent's user can enter, with the peer's process
// credentials (SO_PEERCRED) attached to each connection on Linux.
package unix

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
)

// Name is the transport's name.
const Name = "unix"

// MaxPathLen is the longest socket path the kernel accepts (sun_path less
// its terminating NUL).
const MaxPathLen = 107

// Options tune connections. The zero value means the defaults.
type Options struct {
	MaxPayload   uint32        // largest incoming payload; 0 means wire.DefaultMaxPayload
	WriteTimeout time.Duration // 0 means transport.DefaultWriteTimeout
}

// Listener accepts connections on one socket file and removes the file
// when closed.
type Listener struct {
	ln   *net.UnixListener
	path string
	opts Options
}

var _ transport.Listener = (*Listener)(nil)

// Listen creates a socket at path with mode 0600. The directory should be
// private to the agent (see PrivateDir). An existing file at path is an
// error, not something to remove.
func Listen(path string, opts Options) (*Listener, error) {
	if len(path) > MaxPathLen {
		return nil, fmt.Errorf("%w: unix socket path %q is %d bytes, the limit is %d",
			spear.ErrInvalidConfig, path, len(path), MaxPathLen)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%w: listen on %s: %w", spear.ErrTransport, path, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("%w: chmod %s: %w", spear.ErrTransport, path, err)
	}
	return &Listener{ln: ln, path: path, opts: opts}, nil
}

// Accept implements transport.Listener.
func (l *Listener) Accept() (transport.Conn, error) {
	c, err := l.ln.AcceptUnix()
	if err != nil {
		return nil, transport.FilterCloseErr(err)
	}
	info := transport.Info{Transport: Name, Remote: l.path, PeerPID: -1, PeerUID: -1}
	info.PeerPID, info.PeerUID, info.PeerSID = peerCred(c)
	return transport.NewStreamConn(c, info, l.opts.MaxPayload, l.opts.WriteTimeout), nil
}

// Close stops listening and removes the socket file.
func (l *Listener) Close() error { return l.ln.Close() }

// Addr returns the socket path.
func (l *Listener) Addr() string { return l.path }

// Dial connects to the socket at path.
func Dial(ctx context.Context, path string, opts Options) (transport.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w: dial unix %s: %w", spear.ErrConnectionFailed, path, err)
	}
	return transport.NewStreamConn(c, transport.Info{Transport: Name, Remote: path, PeerPID: -1, PeerUID: -1},
		opts.MaxPayload, opts.WriteTimeout), nil
}

// PrivateDir creates a fresh directory with mode 0700 under parent (the
// system temporary directory when empty), for the sockets of one agent.
func PrivateDir(parent string) (string, error) {
	dir, err := os.MkdirTemp(parent, "spear-")
	if err != nil {
		return "", fmt.Errorf("%w: create socket directory: %w", spear.ErrTransport, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("%w: chmod socket directory: %w", spear.ErrTransport, err)
	}
	return dir, nil
}

func init() {
	transport.Register(transport.Transport{
		Name: Name,
		Listen: func(cfg transport.ListenConfig) (transport.Listener, error) {
			if cfg.Path == nil {
				return nil, fmt.Errorf("%w: a unix listener needs a directory for its socket", spear.ErrInvalidConfig)
			}
			path, err := cfg.Path()
			if err != nil {
				return nil, err
			}
			return Listen(path, Options{MaxPayload: cfg.MaxPayload, WriteTimeout: cfg.WriteTimeout})
		},
		Dial: func(ctx context.Context, addr string, cfg transport.DialConfig) (transport.Conn, error) {
			return Dial(ctx, addr, Options{MaxPayload: cfg.MaxPayload, WriteTimeout: cfg.WriteTimeout})
		},
	})
}
