package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spear-go/spear"
)

// Transport describes one transport, once, for every layer that needs it:
// the agent's channel factory listens with it, the instance SDK dials with
// it, and configurations check channel type names against the table of
// registered transports. Each transport package registers its own in an
// init function, so a program has the transports it imports: an instance
// built on the SDK links unix, tcp and memory, and grpc only if it imports
// transport/grpc.
type Transport struct {
	// Name is the transport's name: the channel type in configurations,
	// SPEAR_CHANNEL, and Info.Transport of its connections.
	Name string
	// Shared says that one listener, opened on first use, serves every
	// instance, whose connections are told apart by the handshake (tcp,
	// grpc). Otherwise each instance gets a listener of its own, which
	// only ever serves that instance (unix, memory).
	Shared bool
	// InProcess says the instance runs inside the agent (memory): its
	// channels default to no heartbeats, the runtime seeing it end.
	InProcess bool
	// TLS says that Listen and Dial honour ListenConfig.TLS and
	// DialConfig.TLS: the network transports (tcp, grpc). The agent
	// encrypts only channels of such transports; the others stay on the
	// machine (unix) or in the process (memory).
	TLS bool
	// Listen opens a listener. What an instance is told to dial
	// (SPEAR_ADDRESS) is the listener's Addr, unless the agent is
	// configured to advertise another address for a shared transport (a
	// pod dials the node's address, not the 0.0.0.0 the agent listens on).
	Listen func(cfg ListenConfig) (Listener, error)
	// Dial connects to addr, an address a Listener of the transport
	// advertised. Failures match spear.ErrConnectionFailed.
	Dial func(ctx context.Context, addr string, cfg DialConfig) (Conn, error)
}

// ListenConfig is what a Transport's Listen gets.
type ListenConfig struct {
	// Addr is the address configured for a shared transport; empty means
	// the transport's default (loopback, an ephemeral port).
	Addr string
	// Path returns a fresh path inside the agent's private (0700)
	// directory, made on first use, for a transport that listens on a file.
	Path func() (string, error)
	// MaxPayload bounds incoming payloads; 0 means wire.DefaultMaxPayload.
	MaxPayload uint32
	// WriteTimeout bounds a write to a peer that stopped reading, where the
	// transport can bound it; 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// TLS, when set, is the server side of TLS on every connection
	// (transports with Transport.TLS only). The handshake runs in the
	// connection's first read or write, not in Accept.
	TLS *tls.Config
	// IdleTimeout bounds how long a network connection may stay open
	// without carrying a Conn whose handshake has begun: a transport that
	// multiplexes (grpc: a connection without a stream) drops it then.
	// The handshake of a Conn is bounded above the transport. 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// DefaultIdleTimeout is ListenConfig.IdleTimeout's default, the same as
// the handshake's.
const DefaultIdleTimeout = 5 * time.Second

// DialConfig is what a Transport's Dial gets.
type DialConfig struct {
	// MaxPayload bounds incoming payloads; 0 means wire.DefaultMaxPayload.
	MaxPayload uint32
	// WriteTimeout is as in ListenConfig.
	WriteTimeout time.Duration
	// TLS, when set, is the client side of TLS (transports with
	// Transport.TLS only); Dial completes the TLS handshake.
	TLS *tls.Config
}

var (
	tableMu sync.RWMutex
	table   = map[string]registered{}
	serial  uint64 // of the last registration
)

type registered struct {
	Transport
	serial uint64
}

// Register adds t to the table of transports, replacing one registered
// under the same name before, and returns a function that takes it out
// again (tests use it to leave the table as they found it; transport
// packages register from init and never take theirs out). It panics when
// t has no name, Listen or Dial: that is a programming error, found when
// the program starts.
func Register(t Transport) (unregister func()) {
	if t.Name == "" || t.Listen == nil || t.Dial == nil {
		panic(fmt.Sprintf("transport: Register(%q): a transport needs a name, Listen and Dial", t.Name))
	}
	tableMu.Lock()
	defer tableMu.Unlock()
	serial++
	mine := serial
	table[t.Name] = registered{t, mine}
	return func() {
		tableMu.Lock()
		defer tableMu.Unlock()
		if r, ok := table[t.Name]; ok && r.serial == mine {
			delete(table, t.Name)
		}
	}
}

// Lookup returns the transport registered as name, or an error matching
// spear.ErrUnsupportedTransport that says which transports the program has.
func Lookup(name string) (Transport, error) {
	tableMu.RLock()
	r, ok := table[name]
	tableMu.RUnlock()
	if !ok {
		return Transport{}, fmt.Errorf("%w: %q is not linked into this program, which has %s "+
			"(a transport is linked by importing its package, such as github.com/spear-go/spear/transport/grpc)",
			spear.ErrUnsupportedTransport, name, Choices())
	}
	return r.Transport, nil
}

// Names returns the names of the registered transports, sorted.
func Names() []string {
	tableMu.RLock()
	defer tableMu.RUnlock()
	names := make([]string, 0, len(table))
	for name := range table {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Choices returns the registered names for a message, as in
// "grpc, memory, tcp or unix".
func Choices() string {
	names := Names()
	switch len(names) {
	case 0:
		return "none"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// Dial connects to addr over the transport registered as name. An unknown
// name is Lookup's error.
func Dial(ctx context.Context, name, addr string, cfg DialConfig) (Conn, error) {
	t, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	return t.Dial(ctx, addr, cfg)
}
