package channel

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/stats"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/transport/unix"
)

// DefaultMaxConnections is the factory-wide cap on instance connections.
const DefaultMaxConnections = 16384

// Options configure a Factory. Zero values mean the defaults.
type Options struct {
	// SocketDir is where the factory makes its private (0700) directory of
	// unix sockets; default the system temporary directory.
	SocketDir string
	// Addrs maps the channel type of a shared transport to its listener's
	// address (default the transport's: loopback, an ephemeral port).
	Addrs map[Type]string
	// Advertise maps the channel type of a shared transport to the address
	// handed to instances, when it must differ from the listener's (a pod
	// dials the node's address, not 0.0.0.0).
	Advertise map[Type]string
	// TCPAddr and GRPCAddr are shorthands for Addrs[TCP] and Addrs[GRPC];
	// AdvertiseTCP and AdvertiseGRPC for Advertise[TCP] and Advertise[GRPC].
	TCPAddr, GRPCAddr, AdvertiseTCP, AdvertiseGRPC string
	// MaxConnections caps instance connections across all channels,
	// handshaking or bound (default DefaultMaxConnections).
	MaxConnections int
	// Defaults are the per-instance defaults under each Config.
	Defaults Config
	// Strategies replace the built-in strategy of the runtime types they
	// name; see also Factory.RegisterStrategy.
	Strategies map[spear.RuntimeType]Strategy
	// Logger receives the factory's and channels' logs; nil discards.
	Logger *slog.Logger
}

// Factory creates and keeps the channels of instances (the seed's
// CommunicationFactory), and accepts and authenticates their connections.
// It is safe for concurrent use.
type Factory struct {
	opts     Options
	defaults Config
	log      *slog.Logger
	ctx      context.Context // ends when the factory closes; bounds handshakes
	cancel   context.CancelFunc
	wg       sync.WaitGroup // accept loops and handshakes
	conns    atomic.Int32   // connections handshaking or bound
	nextSock atomic.Uint64

	addrs     map[Type]string // Options.Addrs with its shorthands
	advertise map[Type]string // Options.Advertise with its shorthands

	mu         sync.Mutex // guards the fields below
	closed     bool
	strategies map[spear.RuntimeType]Strategy
	channels   map[spear.InstanceID]*instanceChannel
	shared     map[Type]transport.Listener // of shared transports, started on first use
	socketDir  string                      // made on first use
}

// NewFactory returns a factory. Listeners and directories are made when a
// channel first needs them.
func NewFactory(opts Options) (*Factory, error) {
	if err := opts.Defaults.Validate(); err != nil {
		return nil, err
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	addrs, err := withShorthands("Addrs", opts.Addrs, map[Type]string{TCP: opts.TCPAddr, GRPC: opts.GRPCAddr})
	if err != nil {
		return nil, err
	}
	advertise, err := withShorthands("Advertise", opts.Advertise, map[Type]string{TCP: opts.AdvertiseTCP, GRPC: opts.AdvertiseGRPC})
	if err != nil {
		return nil, err
	}
	f := &Factory{
		opts:       opts,
		defaults:   opts.Defaults.merge(builtinDefaults),
		log:        opts.Logger,
		addrs:      addrs,
		advertise:  advertise,
		strategies: DefaultStrategies(),
		channels:   map[spear.InstanceID]*instanceChannel{},
		shared:     map[Type]transport.Listener{},
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	for rt, s := range opts.Strategies {
		f.strategies[rt] = s
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f, nil
}

// withShorthands returns m with the non-empty shorthand fields added; a
// shorthand that contradicts m is an error.
func withShorthands(field string, m, short map[Type]string) (map[Type]string, error) {
	out := maps.Clone(m)
	if out == nil {
		out = map[Type]string{}
	}
	for t, v := range short {
		if v == "" {
			continue
		}
		if old, ok := out[t]; ok && old != v {
			return nil, fmt.Errorf("%w: Options.%s[%s] is %q, its shorthand field %q", spear.ErrInvalidConfig, field, t, old, v)
		}
		out[t] = v
	}
	return out, nil
}

// RegisterStrategy sets the strategy of a runtime type, replacing the one
// in force for channels created after it.
func (f *Factory) RegisterStrategy(rt spear.RuntimeType, s Strategy) error {
	if len(s.Order) == 0 {
		return fmt.Errorf("%w: strategy for %s tries no channel type", spear.ErrInvalidConfig, rt)
	}
	for _, t := range append(slices.Clone(s.Order), s.Also...) {
		if _, err := ParseType(string(t)); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.strategies[rt] = s
	return nil
}

// Supports reports whether channel type t may be used for runtime type rt.
func (f *Factory) Supports(rt spear.RuntimeType, t Type) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.strategies[rt]
	return ok && s.supports(t)
}

// CreateChannel creates a channel for a fresh instance of runtime type rt:
// the entry point from before instance ids, kept working. The instance's
// name is generated ("i-" and 12 hex digits).
func (f *Factory) CreateChannel(ctx context.Context, rt spear.RuntimeType, cfg *Config) (Channel, error) {
	for {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		id := spear.InstanceID{Runtime: rt, Name: "i-" + hex.EncodeToString(b)}
		if _, taken := f.Get(id); taken {
			continue
		}
		return f.CreateChannelForInstance(ctx, id, cfg)
	}
}

// CreateChannelForInstance returns the channel of instance id, creating it
// if the factory has none (get-or-create). cfg, which may be nil, applies
// only when the channel is created. The channel type is cfg.Type when set,
// else the runtime's strategy order, falling back along it; when every
// type fails the error is a *spear.InstanceError wrapping a *CreationError
// that lists each. Errors about the instance are *spear.InstanceError
// values naming it.
func (f *Factory) CreateChannelForInstance(ctx context.Context, id spear.InstanceID, cfg *Config) (Channel, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	var c Config
	if cfg != nil {
		if err := cfg.Validate(); err != nil {
			return nil, spear.InstanceErr(id, "create channel", err)
		}
		c = *cfg
	}
	if err := ctx.Err(); err != nil {
		return nil, spear.InstanceErr(id, "create channel", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, spear.InstanceErr(id, "create channel", fmt.Errorf("%w: factory closed", spear.ErrChannelClosed))
	}
	if ch, ok := f.channels[id]; ok {
		return ch, nil
	}
	strat, ok := f.strategies[id.Runtime]
	if !ok {
		return nil, spear.InstanceErr(id, "create channel", fmt.Errorf("%w: %s", spear.ErrUnsupportedRuntime, id.Runtime))
	}
	types := strat.Order
	if c.Type != "" {
		if !strat.supports(c.Type) {
			return nil, spear.InstanceErr(id, "create channel",
				fmt.Errorf("%w: %s channels are not used for %s instances", spear.ErrUnsupportedChannelType, c.Type, id.Runtime))
		}
		types = []Type{c.Type}
	}
	var attempts []Attempt
	for _, t := range types {
		ch, err := f.openLocked(id, t, c)
		if err == nil {
			f.channels[id] = ch
			ch.log.Info("channel created", "address", ch.addr)
			return ch, nil
		}
		f.log.Warn("channel type failed; trying the next", "instance", id.String(), "transport", string(t), "err", err)
		attempts = append(attempts, Attempt{Type: t, Err: err})
	}
	return nil, spear.InstanceErr(id, "create channel", &CreationError{ID: id, Attempts: attempts})
}

// openLocked sets up where instance id will connect over channel type t.
func (f *Factory) openLocked(id spear.InstanceID, t Type, cfg Config) (*instanceChannel, error) {
	tr, err := transport.Lookup(string(t))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", spear.ErrUnsupportedChannelType, err)
	}
	if tr.InProcess && cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = -1 // the runtime sees the instance die
	}
	cfg = cfg.merge(f.defaults)
	ch := newInstanceChannel(f, id, t, cfg)
	ch.secret = auth.NewSecret()
	if tr.Shared {
		ln, err := f.sharedLocked(tr)
		if err != nil {
			return nil, err
		}
		ch.addr = cmp.Or(f.advertise[t], ln.Addr())
		return ch, nil
	}
	ln, err := tr.Listen(transport.ListenConfig{Path: f.socketPathLocked, MaxPayload: cfg.MaxPayload})
	if err != nil {
		return nil, err
	}
	ch.ln, ch.addr = ln, ln.Addr()
	f.wg.Add(1)
	go f.serve(ch.ln, t, ch)
	return ch, nil
}

// socketPathLocked returns a fresh path in the factory's private socket
// directory, making the directory on first use.
func (f *Factory) socketPathLocked() (string, error) {
	if f.socketDir == "" {
		dir, err := unix.PrivateDir(f.opts.SocketDir)
		if err != nil {
			return "", err
		}
		f.socketDir = dir
	}
	return filepath.Join(f.socketDir, strconv.FormatUint(f.nextSock.Add(1), 10)+".sock"), nil
}

// sharedLocked returns the listener of a shared transport, starting it on
// first use.
func (f *Factory) sharedLocked(tr transport.Transport) (transport.Listener, error) {
	t := Type(tr.Name)
	if ln := f.shared[t]; ln != nil {
		return ln, nil
	}
	ln, err := tr.Listen(transport.ListenConfig{Addr: f.addrs[t], MaxPayload: f.defaults.MaxPayload})
	if err != nil {
		return nil, err
	}
	f.shared[t] = ln
	f.wg.Add(1)
	go f.serve(ln, t, nil)
	f.log.Info("listening", "transport", tr.Name, "address", ln.Addr())
	return ln, nil
}

// Get returns the channel of instance id, if the factory has one.
func (f *Factory) Get(id spear.InstanceID) (Channel, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.channels[id]
	if !ok {
		return nil, false
	}
	return ch, true
}

// ActiveInstances lists the instances that have channels, sorted by id.
func (f *Factory) ActiveInstances() []spear.InstanceID {
	f.mu.Lock()
	ids := make([]spear.InstanceID, 0, len(f.channels))
	for id := range f.channels {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	slices.SortFunc(ids, func(a, b spear.InstanceID) int { return cmp.Compare(a.String(), b.String()) })
	return ids
}

// CloseChannel closes the channel of instance id. It is not an error if
// there is none.
func (f *Factory) CloseChannel(id spear.InstanceID) error {
	if ch, ok := f.Get(id); ok {
		return ch.Close()
	}
	return nil
}

// CloseAll closes every channel, keeping the factory usable.
func (f *Factory) CloseAll() error {
	f.mu.Lock()
	chans := make([]*instanceChannel, 0, len(f.channels))
	for _, ch := range f.channels {
		chans = append(chans, ch)
	}
	f.mu.Unlock()
	for _, ch := range chans {
		ch.Close()
	}
	return nil
}

// Close closes every channel and listener, removes the socket directory
// and waits for the factory's goroutines. Idempotent.
func (f *Factory) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	shared := f.shared
	f.shared = nil
	f.mu.Unlock()
	f.cancel()
	for _, ln := range shared {
		ln.Close()
	}
	f.CloseAll()
	f.wg.Wait()
	if f.socketDir != "" {
		return os.RemoveAll(f.socketDir)
	}
	return nil
}

func (f *Factory) forget(ch *instanceChannel) {
	f.mu.Lock()
	if f.channels[ch.id] == ch {
		delete(f.channels, ch.id)
	}
	f.mu.Unlock()
}

func (f *Factory) lookup(id spear.InstanceID) *instanceChannel {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.channels[id]
}

// serve accepts connections on ln: a shared listener when only is nil,
// else the listener of instance only.
func (f *Factory) serve(ln transport.Listener, t Type, only *instanceChannel) {
	defer f.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, spear.ErrChannelClosed) || f.ctx.Err() != nil {
				return
			}
			// Out of file descriptors and the like: back off, go on.
			f.log.Warn("accept failed", "transport", string(t), "err", err)
			select {
			case <-time.After(50 * time.Millisecond):
				continue
			case <-f.ctx.Done():
				return
			}
		}
		if int(f.conns.Add(1)) > f.opts.MaxConnections {
			f.conns.Add(-1)
			f.log.Warn("connection refused: factory connection cap reached", "transport", string(t), "cap", f.opts.MaxConnections)
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				refuse(conn, spear.CodeResourceExhausted, "too many connections")
			}()
			continue
		}
		f.wg.Add(1)
		go f.handshake(conn, t, only)
	}
}

// refuse tells a peer why it is being dropped and closes the connection.
// The write goes to a fresh connection's empty buffer, so it does not
// wait on the peer.
func refuse(conn transport.Conn, code spear.Code, msg string) {
	_ = conn.WriteFrame(codec.ErrorFrame(0, code, msg))
	conn.Close()
}

// handshake authenticates one new connection and binds it to its channel.
func (f *Factory) handshake(conn transport.Conn, t Type, only *instanceChannel) {
	defer f.wg.Done()
	log := f.log.With("transport", string(t), "remote", conn.Info().Remote)
	var target *instanceChannel // the channel whose connection cap this counts against
	// drop closes the connection, telling the peer why when code is not
	// zero, and counts an auth error against the channel it concerns.
	drop := func(c *instanceChannel, code spear.Code, msg string, err error) {
		if c != nil {
			c.stats.Error(statsAuth)
		}
		f.conns.Add(-1)
		if target != nil {
			target.conns.Add(-1)
		}
		if code != 0 {
			refuse(conn, code, msg)
		} else {
			conn.Close()
		}
		log.Warn("instance connection refused", "err", err)
	}
	timeout := f.defaults.AuthTimeout
	if only != nil {
		// An instance's own socket: its cap and its peer check apply
		// before the handshake.
		timeout = only.cfg.AuthTimeout
		log = only.log.With("remote", conn.Info().Remote)
		if err := only.admit(); err != nil {
			drop(only, spear.CodeResourceExhausted, "too many connections", err)
			return
		}
		target = only
		if err := checkPeer(conn.Info(), int(only.expectPID.Load())); err != nil {
			drop(only, spear.CodeAuthFailed, "authentication failed", err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(f.ctx, timeout)
	defer cancel()
	var claimed *instanceChannel
	lookup := func(id spear.InstanceID) (auth.Credentials, bool) {
		c := only
		if c == nil {
			c = f.lookup(id)
		}
		if c == nil || c.id != id || c.typ != t {
			return auth.Credentials{}, false
		}
		claimed = c
		return auth.Credentials{Secret: c.secret}, true
	}
	sessionID := auth.NewSessionID()
	offer := func(spear.InstanceID) (auth.Offer, error) {
		if only == nil {
			// A shared listener learns the instance only now, once it
			// has proved who it is: only then may it take a place under
			// that instance's cap (an impostor never can).
			if err := claimed.admit(); err != nil {
				return auth.Offer{}, errors.Join(err,
					&spear.RemoteError{Code: spear.CodeResourceExhausted, Message: "too many connections"})
			}
			target = claimed
		}
		return auth.Offer{
			SessionID:         sessionID,
			Features:          Features,
			HeartbeatInterval: uint32(max(claimed.cfg.HeartbeatInterval, 0) / time.Millisecond),
			MaxPayload:        claimed.cfg.MaxPayload,
		}, nil
	}
	if _, err := auth.Accept(ctx, conn, lookup, offer); err != nil {
		// Count the failure against the instance it claimed to be, or
		// whose own socket it came in on. The peer was told already.
		drop(cmp.Or(claimed, only), 0, "", err)
		return
	}
	target.bind(conn, sessionID)
}

// Features are the optional protocol features this agent announces in its
// AUTH_RESPONSE.
var Features = []string{"stream", "cancel", "signal", "heartbeat", "message"}

const statsAuth = stats.ErrAuth
