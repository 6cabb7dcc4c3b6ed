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
	"github.com/spear-go/spear/internal/chantls"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/internal/leftover"
	"github.com/spear-go/spear/stats"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/transport/unix"
	"github.com/spear-go/spear/wire"
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
	// TLS, when set, runs the channels of network transports (tcp, grpc)
	// over TLS with the agent's certificate; their instances are told how
	// to check it (Credentials.TLS), and in mutual mode must present the
	// certificate issued for them.
	TLS *chantls.Agent
	// Defaults are the per-instance defaults under each Config.
	Defaults Config
	// Strategies replace the built-in strategy of the runtime types they
	// name; see also Factory.RegisterStrategy.
	Strategies map[spear.RuntimeType]Strategy
	// Logger receives the factory's and channels' logs; nil discards.
	Logger *slog.Logger
	// Leftovers records the socket directory while the factory has it,
	// so that the next agent removes it if this one dies; nil records
	// nothing.
	Leftovers *leftover.Book
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

	mu         sync.Mutex // guards the fields below; never held across a system call
	closed     bool
	strategies map[spear.RuntimeType]Strategy
	channels   map[spear.InstanceID]*Channel
	creating   map[spear.InstanceID]chan struct{} // closed when the creation ends
	shared     map[Type]*sharedListener           // of shared transports, started on first use

	dirMu     sync.Mutex // guards the fields below
	socketDir string     // made on first use
	dirGone   bool       // removed by Close
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
		channels:   map[spear.InstanceID]*Channel{},
		creating:   map[spear.InstanceID]chan struct{}{},
		shared:     map[Type]*sharedListener{},
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
	return ok && s.Allows(t)
}

// CreateChannel creates a channel for a fresh instance of runtime type rt:
// the entry point from before instance ids, kept working. The instance's
// name is generated ("i-" and 12 hex digits).
func (f *Factory) CreateChannel(ctx context.Context, rt spear.RuntimeType, cfg *Config) (*Channel, error) {
	for {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		ch, err := f.Create(ctx, spear.InstanceID{Runtime: rt, Name: "i-" + hex.EncodeToString(b)}, cfg)
		if !errors.Is(err, ErrExists) { // a name drawn twice: draw again
			return ch, err
		}
	}
}

// CreateChannelForInstance returns the channel of instance id: the one the
// factory has, if any, else a new one (get-or-create; the seed's
// create_channel_for_instance). cfg, which may be nil, applies only when
// the channel is created. When another goroutine is creating the same
// instance's channel, it waits for that one.
//
// Getting an existing channel hands out its credentials, secret included.
// A runtime launching an instance wants Create instead, which refuses an
// id in use: the channel it gets is then the new instance's alone.
//
// Errors are Create's, except that ErrExists does not occur.
func (f *Factory) CreateChannelForInstance(ctx context.Context, id spear.InstanceID, cfg *Config) (*Channel, error) {
	for {
		if ch, ok := f.Get(id); ok {
			return ch, nil
		}
		ch, err := f.Create(ctx, id, cfg)
		if !errors.Is(err, ErrExists) {
			return ch, err
		}
		f.mu.Lock()
		creating := f.creating[id]
		f.mu.Unlock()
		if creating == nil {
			continue // created meanwhile, or closed again: look again
		}
		select {
		case <-creating:
		case <-ctx.Done():
			return nil, spear.InstanceErr(id, "create channel", spear.ContextError(ctx))
		}
	}
}

// Create creates the channel of instance id, which must not have one. The
// channel type is cfg.Type when set (cfg may be nil), else the runtime's
// strategy order, falling back along it.
//
// Errors are *spear.InstanceError values naming the instance. They match
// ErrExists when the instance has a channel or one is being created,
// ErrFactoryClosed after Close, spear.ErrInvalidInstanceID,
// spear.ErrInvalidConfig, spear.ErrUnsupportedRuntime or
// spear.ErrUnsupportedChannelType for a request that cannot be served, and
// spear.ErrChannelCreationFailed, through a *CreationError listing each
// type tried and why, when no type worked.
//
// Setting up where the instance connects (a socket file, a listening port)
// happens without the factory's lock, so creations do not wait on each
// other's system calls.
func (f *Factory) Create(ctx context.Context, id spear.InstanceID, cfg *Config) (*Channel, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	fail := func(err error) (*Channel, error) { return nil, spear.InstanceErr(id, "create channel", err) }
	var c Config
	if cfg != nil {
		if err := cfg.Validate(); err != nil {
			return fail(err)
		}
		c = *cfg
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	types, done, err := f.reserve(id, c.Type)
	if err != nil {
		return fail(err)
	}
	defer close(done)
	var attempts []Attempt
	for _, t := range types {
		ch, err := f.open(id, t, c)
		if err == nil {
			err = f.install(ch)
		}
		if err == nil {
			ch.log.Info("channel created", "address", ch.addr)
			return ch, nil
		}
		if errors.Is(err, ErrFactoryClosed) {
			f.unreserve(id)
			return fail(err)
		}
		f.log.Warn("channel type failed; trying the next", "instance", id.String(), "transport", string(t), "err", err)
		attempts = append(attempts, Attempt{Type: t, Err: err})
	}
	f.unreserve(id)
	return fail(&CreationError{ID: id, Attempts: attempts})
}

// reserve marks id as being created and returns the channel types to try
// and a channel to close once creation ends.
func (f *Factory) reserve(id spear.InstanceID, forced Type) ([]Type, chan struct{}, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, nil, ErrFactoryClosed
	}
	if _, ok := f.channels[id]; ok || f.creating[id] != nil {
		return nil, nil, ErrExists
	}
	strat, ok := f.strategies[id.Runtime]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", spear.ErrUnsupportedRuntime, id.Runtime)
	}
	types := strat.Order
	if forced != "" {
		if !strat.Allows(forced) {
			return nil, nil, fmt.Errorf("%w: %s channels are not used for %s instances", spear.ErrUnsupportedChannelType, forced, id.Runtime)
		}
		types = []Type{forced}
	}
	done := make(chan struct{})
	f.creating[id] = done
	return types, done, nil
}

// unreserve ends a creation of id that failed.
func (f *Factory) unreserve(id spear.InstanceID) {
	f.mu.Lock()
	delete(f.creating, id)
	f.mu.Unlock()
}

// install makes ch, just opened, the channel of its instance, and starts
// accepting on its own listener if it has one. After Close it closes ch's
// listener instead and fails with ErrFactoryClosed.
func (f *Factory) install(ch *Channel) error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		if ch.ln != nil {
			ch.ln.Close()
		}
		return ErrFactoryClosed
	}
	delete(f.creating, ch.id)
	f.channels[ch.id] = ch
	if ch.ln != nil {
		f.wg.Add(1) // under mu, so that Close's Wait cannot have begun
	}
	f.mu.Unlock()
	if ch.ln != nil {
		go f.serve(ch.ln, ch.typ, ch)
	}
	return nil
}

// open sets up where instance id will connect over channel type t. It
// makes system calls and holds no lock but short ones.
func (f *Factory) open(id spear.InstanceID, t Type, cfg Config) (*Channel, error) {
	tr, err := transport.Lookup(string(t))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", spear.ErrUnsupportedChannelType, err)
	}
	if tr.InProcess && cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = -1 // the runtime sees the instance die
	}
	cfg = cfg.merge(f.defaults)
	ch := newChannel(f, id, t, cfg)
	ch.secret = auth.NewSecret()
	if tr.TLS && f.opts.TLS != nil {
		if ch.tls, err = f.opts.TLS.Issue(id, ch.secret); err != nil {
			return nil, err
		}
	}
	if tr.Shared {
		ln, err := f.sharedListener(tr)
		if err != nil {
			return nil, err
		}
		ch.addr = cmp.Or(f.advertise[t], ln.Addr())
		return ch, nil
	}
	ln, err := tr.Listen(transport.ListenConfig{Path: f.socketPath, MaxPayload: cfg.MaxPayload})
	if err != nil {
		return nil, err
	}
	if o := cfg.SocketOwner; o != nil && t == Unix {
		if err := f.giveSocket(ln.Addr(), *o); err != nil {
			ln.Close()
			return nil, err
		}
	}
	ch.ln, ch.addr = ln, ln.Addr()
	return ch, nil
}

// giveSocket makes the socket at path belong to o, and the socket
// directory searchable, so that a process of o's can connect while others
// cannot (the socket stays 0600).
func (f *Factory) giveSocket(path string, o Owner) error {
	if err := os.Chown(path, o.UID, o.GID); err != nil {
		return fmt.Errorf("%w: give the socket to uid %d: %w", spear.ErrTransport, o.UID, err)
	}
	if err := os.Chmod(filepath.Dir(path), 0o711); err != nil {
		return fmt.Errorf("%w: socket directory: %w", spear.ErrTransport, err)
	}
	return nil
}

// socketPath returns a fresh path in the factory's private socket
// directory, making the directory on first use.
func (f *Factory) socketPath() (string, error) {
	f.dirMu.Lock()
	defer f.dirMu.Unlock()
	if f.dirGone {
		return "", ErrFactoryClosed
	}
	if f.socketDir == "" {
		dir, err := unix.PrivateDir(f.opts.SocketDir)
		if err != nil {
			return "", err
		}
		if err := f.opts.Leftovers.Add(leftoverSockets, filepath.Base(dir), socketDirRecord{Path: dir}); err != nil {
			os.Remove(dir)
			return "", fmt.Errorf("%w: %w", spear.ErrTransport, err)
		}
		f.socketDir = dir
	}
	return filepath.Join(f.socketDir, strconv.FormatUint(f.nextSock.Add(1), 10)+".sock"), nil
}

// sharedListener returns the listener of a shared transport, starting it
// on first use. Creations that need it meanwhile wait for it, the others
// do not.
func (f *Factory) sharedListener(tr transport.Transport) (transport.Listener, error) {
	t := Type(tr.Name)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, ErrFactoryClosed
	}
	sl := f.shared[t]
	if sl == nil {
		sl = &sharedListener{}
		f.shared[t] = sl
	}
	f.mu.Unlock()
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.ln != nil {
		return sl.ln, nil
	}
	lc := transport.ListenConfig{Addr: f.addrs[t], MaxPayload: f.defaults.MaxPayload, IdleTimeout: f.defaults.AuthTimeout}
	if tr.TLS && f.opts.TLS != nil {
		lc.TLS = f.opts.TLS.ServerConfig()
	}
	ln, err := tr.Listen(lc)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		ln.Close()
		return nil, ErrFactoryClosed
	}
	sl.ln = ln
	f.wg.Add(1)
	f.mu.Unlock()
	go f.serve(ln, t, nil)
	f.log.Info("listening", "transport", tr.Name, "address", ln.Addr())
	return ln, nil
}

// sharedListener is the listener of one shared transport. Its mu is held
// while the listener is being opened; ln is set under both mu and
// Factory.mu, so either suffices to read it.
type sharedListener struct {
	mu sync.Mutex
	ln transport.Listener
}

// Get returns the channel of instance id, if the factory has one (not one
// still being created).
func (f *Factory) Get(id spear.InstanceID) (*Channel, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.channels[id]
	return ch, ok
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
	chans := make([]*Channel, 0, len(f.channels))
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
	var shared []transport.Listener
	for _, sl := range f.shared {
		if sl.ln != nil {
			shared = append(shared, sl.ln)
		}
	}
	f.mu.Unlock()
	f.cancel()
	for _, ln := range shared {
		ln.Close()
	}
	f.CloseAll()
	f.wg.Wait()
	f.dirMu.Lock()
	defer f.dirMu.Unlock()
	f.dirGone = true
	if f.socketDir != "" {
		if err := os.RemoveAll(f.socketDir); err != nil {
			return err
		}
		f.opts.Leftovers.Remove(leftoverSockets, filepath.Base(f.socketDir))
	}
	return nil
}

func (f *Factory) forget(ch *Channel) {
	f.mu.Lock()
	if f.channels[ch.id] == ch {
		delete(f.channels, ch.id)
	}
	f.mu.Unlock()
}

func (f *Factory) lookup(id spear.InstanceID) *Channel {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.channels[id]
}

// serve accepts connections on ln: a shared listener when only is nil,
// else the listener of instance only.
func (f *Factory) serve(ln transport.Listener, t Type, only *Channel) {
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
func (f *Factory) handshake(conn transport.Conn, t Type, only *Channel) {
	defer f.wg.Done()
	log := f.log.With("transport", string(t), "remote", conn.Info().Remote)
	var target *Channel // the channel whose connection cap this counts against
	// drop closes the connection, telling the peer why when code is not
	// zero, and counts an auth error against the channel it concerns.
	drop := func(c *Channel, code spear.Code, msg string, err error) {
		if c != nil {
			c.stats.Error(stats.KindAuth)
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
		// A peer that never completes the handshake is logged at debug
		// level: a stall attack would otherwise write a line per
		// connection. A handshake that fails is an operator's concern.
		level := slog.LevelWarn
		if errors.Is(err, spear.ErrTimeout) && c == nil {
			level = slog.LevelDebug
		}
		log.Log(context.Background(), level, "instance connection refused", "err", err)
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
		if err := only.checkPeer(conn.Info()); err != nil {
			drop(only, spear.CodeAuthFailed, "authentication failed", err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(f.ctx, timeout)
	defer cancel()
	var claimed *Channel
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
	var slot int
	offer := func(_ spear.InstanceID, sl auth.Slot) (auth.Offer, error) {
		if only == nil {
			// A shared listener learns the instance only now, once it
			// has proved who it is: only then may its peer check run,
			// and it take a place under that instance's cap (an
			// impostor never can).
			if err := claimed.checkPeer(conn.Info()); err != nil {
				return auth.Offer{}, errors.Join(err, &spear.RemoteError{Code: spear.CodeAuthFailed, Message: "authentication failed"})
			}
			if err := claimed.admit(); err != nil {
				return auth.Offer{}, errors.Join(err,
					&spear.RemoteError{Code: spear.CodeResourceExhausted, Message: "too many connections"})
			}
			target = claimed
		}
		n, err := claimed.offer(sl.Connection, sl.MaxConnections)
		if err != nil {
			return auth.Offer{}, errors.Join(err,
				&spear.RemoteError{Code: spear.CodeResourceExhausted, Message: "connection index past the instance's cap"})
		}
		slot = int(sl.Connection)
		return auth.Offer{
			SessionID:         sessionID,
			Features:          Features,
			HeartbeatInterval: uint32(max(claimed.cfg.HeartbeatInterval, 0) / time.Millisecond),
			MaxPayload:        claimed.cfg.MaxPayload,
			Connections:       n,
		}, nil
	}
	peer, err := auth.Accept(ctx, conn, lookup, offer)
	if err != nil {
		// Count the failure against the instance it claimed to be, or
		// whose own socket it came in on. The peer was told already.
		drop(cmp.Or(claimed, only), 0, "", err)
		return
	}
	target.bind(conn, sessionID, slot, peer)
}

// Features are the optional protocol features this agent announces in its
// AUTH_RESPONSE ("split": it reads split execute responses).
var Features = []string{"stream", "cancel", "signal", "heartbeat", "message", "connections", wire.FeatureSplit}
