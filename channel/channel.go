// Package channel is the agent's side of instance communication: channels
// bound to exactly one runtime instance, the connection manager that
// authenticates instances and binds their connections, and the factory
// that creates channels per instance with per-runtime strategies.
//
// A channel exists before its instance connects. The factory picks a
// channel type (unix, tcp, grpc or memory), sets up where the instance will
// connect and issues a fresh secret; the runtime hands both to the
// instance (Credentials.HandOver, for a child process); the instance
// connects and authenticates (internal/auth), and the connection is bound to the channel. Requests,
// streams and heartbeats then run in internal/session, the same code for
// every transport.
package channel

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/chantls"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// Type is a channel type: the name of the transport a channel runs on, one
// of those registered in package transport's table.
type Type string

// The built-in channel types.
const (
	Unix   Type = "unix"
	TCP    Type = "tcp"
	GRPC   Type = "grpc"
	Memory Type = "memory"
)

// Types lists the channel types of the registered transports, sorted.
func Types() []Type {
	names := transport.Names()
	types := make([]Type, len(names))
	for i, n := range names {
		types[i] = Type(n)
	}
	return types
}

// ParseType returns the channel type named s, or an error matching
// spear.ErrUnsupportedChannelType when no transport is registered as s.
func ParseType(s string) (Type, error) {
	if _, err := transport.Lookup(s); err != nil {
		return "", fmt.Errorf("%w: %q (want %s)", spear.ErrUnsupportedChannelType, s, transport.Choices())
	}
	return Type(s), nil
}

// Message is one message on a channel: a frame type, its flags and its
// payload. Flags the session sets itself (wire.FlagStream on a stream's
// request) need not be given.
type Message struct {
	Type    wire.Type
	Flags   wire.Flags
	Payload []byte
}

// Credentials are what an instance needs to connect back.
type Credentials struct {
	ID      spear.InstanceID
	Type    Type
	Address string
	Secret  spear.Secret
	// TLS says how the instance checks the agent on a network channel
	// with TLS (and its client certificate in mutual mode); it is zero
	// when the channel has no TLS. None of it is secret.
	TLS chantls.Instance
}

// Env returns SPEAR_INSTANCE_ID, SPEAR_CHANNEL and SPEAR_ADDRESS: who the
// instance is and where it connects (docs/protocol.md, "Bootstrap"). The
// secret is not among them: a child process receives it through HandOver,
// an in-process guest through SecretEnv.
func (c Credentials) Env() []string {
	return append([]string{
		spear.EnvInstanceID + "=" + c.ID.String(),
		spear.EnvChannel + "=" + string(c.Type),
		spear.EnvAddress + "=" + c.Address,
	}, c.TLS.Env()...)
}

// SecretEnv returns the SPEAR_SECRET variable. It belongs only in an
// environment no other process can read, such as a wasm guest's, or in a
// process whose function opted in (SecretViaEnv): any process of the same
// user can read a process's environment from /proc until it makes itself
// non-dumpable.
func (c Credentials) SecretEnv() string {
	return spear.EnvSecret + "=" + hex.EncodeToString(c.Secret)
}

// SecretVia says how a child process receives its secret.
type SecretVia string

// The ways of handing a secret to a child process.
const (
	// SecretViaFD, the default, passes it through an inherited pipe that
	// the instance reads to EOF and closes (SPEAR_SECRET_FD): it is never
	// in an environment, and once read it is nowhere but in the
	// instance's memory.
	SecretViaFD SecretVia = "fd"
	// SecretViaEnv puts it in SPEAR_SECRET, for instances that can only
	// read their environment. docs/security.md says what that risks.
	SecretViaEnv SecretVia = "env"
)

// Validate checks v is one of the SecretVia values, or empty (the
// default, SecretViaFD).
func (v SecretVia) Validate() error {
	switch v {
	case "", SecretViaFD, SecretViaEnv:
		return nil
	}
	return fmt.Errorf("%w: secret hand-off %q: want %q or %q", spear.ErrInvalidConfig, string(v), SecretViaFD, SecretViaEnv)
}

// HandOver sets up cmd, before it starts, to receive the credentials: Env
// is appended to cmd.Env, which must already hold the rest of the child's
// environment, and the secret goes as via says (the zero value is
// SecretViaFD). For the descriptor, the secret is written into a fresh
// pipe whose write end is closed at once, and the read end is added to
// cmd.ExtraFiles, its number in the child in SPEAR_SECRET_FD.
//
// This is the agent side's one writer of the hand-off (as
// internal/auth.SecretFromEnv is the instance side's one reader). The
// returned function closes the agent's copy of the pipe; call it once cmd
// has started, or failed to.
func (c Credentials) HandOver(cmd *exec.Cmd, via SecretVia) (release func(), err error) {
	if err := via.Validate(); err != nil {
		return nil, err
	}
	cmd.Env = append(cmd.Env, c.Env()...)
	if via == SecretViaEnv {
		cmd.Env = append(cmd.Env, c.SecretEnv())
		return func() {}, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: secret pipe: %w", spear.ErrChannelCreationFailed, err)
	}
	// A pipe's buffer holds far more than a secret, so the write does not
	// wait for the reader; closing the write end lets it read to EOF.
	_, err = w.WriteString(hex.EncodeToString(c.Secret) + "\n")
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: secret pipe: %w", spear.ErrChannelCreationFailed, err)
	}
	fd := 3 + len(cmd.ExtraFiles) // ExtraFiles[i] is descriptor 3+i in the child
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	cmd.Env = append(cmd.Env, spear.EnvSecretFD+"="+strconv.Itoa(fd))
	return func() { r.Close() }, nil
}

// Config is a channel's per-instance configuration (the seed's
// ChannelConfig). Zero values mean the factory's defaults, and where those
// are zero too, the defaults documented per field.
type Config struct {
	// Type forces a channel type instead of the runtime's strategy.
	Type Type
	// RequestTimeout bounds requests whose context has no deadline
	// (default 30s).
	RequestTimeout time.Duration
	// HeartbeatInterval is how often an idle instance is probed (default
	// 5s; memory channels default to none, the instance being in-process).
	// Negative disables heartbeats.
	HeartbeatInterval time.Duration
	// HeartbeatMisses is how many silent intervals mark the instance
	// disconnected (default 3).
	HeartbeatMisses int
	// AuthTimeout bounds the handshake (default 5s).
	AuthTimeout time.Duration
	// MaxPayload bounds frame payloads (default 16 MiB).
	MaxPayload uint32
	// MaxConnections bounds the instance's simultaneous connections,
	// handshaking or bound (default 4).
	MaxConnections int
	// Connections is how many connections the instance is asked to hold
	// (default 1), within MaxConnections and what the instance says it
	// can hold; instances that predate multiple connections hold one.
	Connections int
	// StreamBuffer bounds unread chunks per stream (default 256).
	StreamBuffer int
	// InboxSize bounds unread one-way messages (default 256); more are
	// dropped and counted as overflow errors.
	InboxSize int
	// CheckPeer, when set, vets each connection by what its transport
	// knows of the peer (transport.Info: on unix sockets on Linux, the
	// peer's pid and uid from SO_PEERCRED) before the handshake, on the
	// instance's own listener, or right after the handshake, on a shared
	// one. An error refuses the connection as AUTH_FAILED. The process
	// runtime uses it to admit only the instance's session and user.
	CheckPeer func(transport.Info) error
	// SocketOwner, when set, gives the instance's unix socket to this user
	// and group (its mode stays 0600), for an instance that runs as
	// another user than the agent. The factory's socket directory then
	// lets others reach a socket they know the name of (0711) but not list
	// them. Other channel types ignore it.
	SocketOwner *Owner
}

// Owner is a user and group, by number.
type Owner struct {
	UID, GID int
}

// merge returns c with zero fields taken from d.
func (c Config) merge(d Config) Config {
	set := func(v *time.Duration, dv time.Duration) {
		if *v == 0 {
			*v = dv
		}
	}
	if c.Type == "" {
		c.Type = d.Type
	}
	set(&c.RequestTimeout, d.RequestTimeout)
	set(&c.HeartbeatInterval, d.HeartbeatInterval)
	set(&c.AuthTimeout, d.AuthTimeout)
	if c.HeartbeatMisses == 0 {
		c.HeartbeatMisses = d.HeartbeatMisses
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = d.MaxPayload
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = d.MaxConnections
	}
	if c.Connections == 0 {
		c.Connections = d.Connections
	}
	if c.StreamBuffer == 0 {
		c.StreamBuffer = d.StreamBuffer
	}
	if c.InboxSize == 0 {
		c.InboxSize = d.InboxSize
	}
	if c.CheckPeer == nil {
		c.CheckPeer = d.CheckPeer
	}
	if c.SocketOwner == nil {
		c.SocketOwner = d.SocketOwner
	}
	return c
}

// builtinDefaults are the defaults when neither the instance's config nor
// the factory's says otherwise.
var builtinDefaults = Config{
	RequestTimeout:    30 * time.Second,
	HeartbeatInterval: 5 * time.Second,
	HeartbeatMisses:   3,
	AuthTimeout:       5 * time.Second,
	MaxPayload:        wire.DefaultMaxPayload,
	MaxConnections:    4,
	StreamBuffer:      256,
	InboxSize:         256,
}

// Defaults returns the channel settings that apply when neither an
// instance's Config nor its factory's Options says otherwise.
func Defaults() Config { return builtinDefaults }

// Validate checks the configuration's values.
func (c Config) Validate() error {
	if c.Type != "" {
		if _, err := ParseType(string(c.Type)); err != nil {
			return err
		}
	}
	switch {
	case c.RequestTimeout < 0, c.AuthTimeout < 0:
		return fmt.Errorf("%w: negative timeout", spear.ErrInvalidConfig)
	case c.HeartbeatMisses < 0, c.MaxConnections < 0, c.Connections < 0, c.StreamBuffer < 0, c.InboxSize < 0:
		return fmt.Errorf("%w: negative count", spear.ErrInvalidConfig)
	}
	return CheckHeartbeatInterval(c.HeartbeatInterval)
}

// MinHeartbeatInterval is the shortest heartbeat interval a channel takes:
// shorter, and heartbeats would measure the scheduler, not the instance.
const MinHeartbeatInterval = 10 * time.Millisecond

// CheckHeartbeatInterval checks a heartbeat interval as a Config's
// HeartbeatInterval: negative (none), zero (the default) or at least
// MinHeartbeatInterval. The error matches spear.ErrInvalidConfig.
func CheckHeartbeatInterval(d time.Duration) error {
	if d > 0 && d < MinHeartbeatInterval {
		return fmt.Errorf("%w: heartbeat interval %s is under %s", spear.ErrInvalidConfig, d, MinHeartbeatInterval)
	}
	return nil
}
