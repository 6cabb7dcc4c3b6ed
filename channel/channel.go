// Package channel is the agent's side of instance communication: channels
// bound to exactly one runtime instance, the connection manager that
// authenticates instances and binds their connections, and the factory
// that creates channels per instance with per-runtime strategies.
//
// A channel exists before its instance connects. The factory picks a
// channel type (unix, tcp, grpc or memory), sets up where the instance will
// connect and issues a fresh secret; the runtime hands both to the
// instance (Credentials.Env); the instance connects and authenticates
// (internal/auth), and the connection is bound to the channel. Requests,
// streams and heartbeats then run in internal/session, the same code for
// every transport.
package channel

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/stats"
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

// Message is one message on a channel: a frame type and its payload.
type Message struct {
	Type    wire.Type
	Payload []byte
}

// Channel is the communication channel of exactly one runtime instance.
// Every method is safe for concurrent use. Errors about the instance are
// *spear.InstanceError values naming it, wrapping a spear category.
type Channel interface {
	// InstanceID returns the instance this channel belongs to.
	InstanceID() spear.InstanceID
	// Type returns the channel type.
	Type() Type
	// Credentials returns what the instance needs to connect. It holds the
	// instance's secret: hand it only to that instance.
	Credentials() Credentials
	// ExpectPID restricts connections to processes in the process group
	// of pid (the launched child), checked with SO_PEERCRED on unix
	// sockets on Linux. Other transports ignore it.
	ExpectPID(pid int)

	// Send writes a one-way message (typically TypeMessage or TypeSignal).
	Send(ctx context.Context, m Message) error
	// Receive returns the next one-way message the instance sent. Once
	// the channel is closed it fails with spear.ErrChannelClosed, even
	// with messages left unread.
	Receive(ctx context.Context) (Message, error)
	// Request sends m and waits for the answer, which is matched by
	// request id, so concurrent requests do not wait on each other. An
	// ERROR answer is a *spear.RemoteError. When ctx has no deadline the
	// channel's RequestTimeout applies.
	Request(ctx context.Context, m Message) (Message, error)
	// Stream sends m asking for a streamed answer.
	Stream(ctx context.Context, m Message) (*Stream, error)

	// IsConnected reports whether an authenticated connection is bound.
	IsConnected() bool
	// WaitConnected waits until an authenticated connection is bound.
	WaitConnected(ctx context.Context) error
	// Disconnected returns a channel closed when the current connection
	// ends (at once when none is bound).
	Disconnected() <-chan struct{}
	// Close closes the channel: pending requests fail at once with
	// spear.ErrChannelClosed, the instance's connection and listening
	// address go away, and the factory forgets the channel. Idempotent.
	Close() error
	// Stats returns the channel's statistics.
	Stats() stats.Snapshot
}

// Credentials are what an instance needs to connect back.
type Credentials struct {
	ID      spear.InstanceID
	Type    Type
	Address string
	Secret  spear.Secret
}

// Env returns the credentials as the SPEAR_* environment variables of
// docs/protocol.md.
func (c Credentials) Env() []string {
	return []string{
		spear.EnvInstanceID + "=" + c.ID.String(),
		spear.EnvSecret + "=" + hex.EncodeToString(c.Secret),
		spear.EnvChannel + "=" + string(c.Type),
		spear.EnvAddress + "=" + c.Address,
	}
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
	// StreamBuffer bounds unread chunks per stream (default 256).
	StreamBuffer int
	// InboxSize bounds unread one-way messages (default 256); more are
	// dropped and counted as overflow errors.
	InboxSize int
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
	if c.StreamBuffer == 0 {
		c.StreamBuffer = d.StreamBuffer
	}
	if c.InboxSize == 0 {
		c.InboxSize = d.InboxSize
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
	case c.HeartbeatMisses < 0, c.MaxConnections < 0, c.StreamBuffer < 0, c.InboxSize < 0:
		return fmt.Errorf("%w: negative count", spear.ErrInvalidConfig)
	case c.HeartbeatInterval > 0 && c.HeartbeatInterval < 10*time.Millisecond:
		return fmt.Errorf("%w: heartbeat interval %s is under 10ms", spear.ErrInvalidConfig, c.HeartbeatInterval)
	}
	return nil
}
