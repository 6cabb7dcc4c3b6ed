package channel_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/transport"
)

func TestDefaultStrategies(t *testing.T) {
	f := newFactory(t, channel.Options{})
	want := map[spear.RuntimeType]channel.Type{spear.Process: channel.Unix, spear.Kubernetes: channel.GRPC, spear.Wasm: channel.Memory}
	for rt, typ := range want {
		ch, err := f.CreateChannel(testCtx(t), rt, nil)
		if err != nil {
			t.Fatalf("%s: %v", rt, err)
		}
		if ch.Type() != typ || ch.Credentials().Type != typ {
			t.Errorf("%s instance got a %s channel, want %s", rt, ch.Type(), typ)
		}
	}
	orders := channel.DefaultStrategies()
	for rt, order := range map[spear.RuntimeType][]channel.Type{
		spear.Process:    {channel.Unix, channel.TCP},
		spear.Kubernetes: {channel.GRPC, channel.TCP},
		spear.Wasm:       {channel.Memory},
	} {
		if got := orders[rt].Order; !slices.Equal(got, order) {
			t.Errorf("%s strategy order %v, want %v", rt, got, order)
		}
	}
	supports := []struct {
		rt   spear.RuntimeType
		typ  channel.Type
		want bool
	}{
		{spear.Process, channel.Unix, true},
		{spear.Process, channel.TCP, true},
		{spear.Process, channel.GRPC, true},
		{spear.Process, channel.Memory, false},
		{spear.Kubernetes, channel.GRPC, true},
		{spear.Kubernetes, channel.TCP, true},
		{spear.Kubernetes, channel.Unix, false},
		{spear.Wasm, channel.Memory, true},
		{spear.Wasm, channel.Unix, false},
		{spear.Wasm, channel.TCP, false},
		{spear.RuntimeType(0), channel.TCP, false},
	}
	for _, tt := range supports {
		if got := f.Supports(tt.rt, tt.typ); got != tt.want {
			t.Errorf("Supports(%s, %s) = %v, want %v", tt.rt, tt.typ, got, tt.want)
		}
	}
}

func TestFallbackToTCP(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{
		"missing socket dir":   filepath.Join(t.TempDir(), "missing"),
		"socket path too long": long,
	} {
		t.Run(name, func(t *testing.T) {
			f := newFactory(t, channel.Options{SocketDir: dir})
			ch, err := f.CreateChannel(testCtx(t), spear.Process, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ch.Type() != channel.TCP {
				t.Fatalf("channel type %s, want the tcp fallback", ch.Type())
			}
			startInProcess(t, ch, nil)
			waitConnected(t, ch)
			if err := echo(testCtx(t), ch, "fallback"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCreationFailsOnEveryType(t *testing.T) {
	f := newFactory(t, channel.Options{
		SocketDir: filepath.Join(t.TempDir(), "missing"),
		TCPAddr:   "127.0.0.1:not-a-port",
	})
	id := spear.InstanceID{Runtime: spear.Process, Name: "doomed"}
	_, err := f.CreateChannelForInstance(testCtx(t), id, nil)
	if !errors.Is(err, spear.ErrChannelCreationFailed) {
		t.Fatalf("got %v, want spear.ErrChannelCreationFailed", err)
	}
	var ce *channel.CreationError
	if !errors.As(err, &ce) {
		t.Fatalf("got %T %v, want a *channel.CreationError", err, err)
	}
	var types []channel.Type
	for _, a := range ce.Attempts {
		types = append(types, a.Type)
		if a.Err == nil {
			t.Errorf("attempt %s has no error", a.Type)
		} else if !strings.Contains(err.Error(), a.Err.Error()) {
			t.Errorf("error text %q does not say why %s failed", err, a.Type)
		}
	}
	if !slices.Equal(types, []channel.Type{channel.Unix, channel.TCP}) {
		t.Errorf("tried %v, want unix then tcp", types)
	}
	if ce.ID != id {
		t.Errorf("CreationError names %s, want %s", ce.ID, id)
	}
	wantInstanceErr(t, err, id)
	if !errors.Is(err, spear.ErrTransport) {
		t.Errorf("error %v does not unwrap to the attempts' transport errors", err)
	}
	if _, ok := f.Get(id); ok || len(f.ActiveInstances()) != 0 {
		t.Error("a failed creation left a channel behind")
	}
}

func TestStrategyOverrides(t *testing.T) {
	f := newFactory(t, channel.Options{Strategies: map[spear.RuntimeType]channel.Strategy{
		spear.Kubernetes: {Order: []channel.Type{channel.TCP}},
	}})
	if err := f.RegisterStrategy(spear.Process, channel.Strategy{Order: []channel.Type{channel.TCP, channel.Unix}}); err != nil {
		t.Fatal(err)
	}
	for rt, want := range map[spear.RuntimeType]channel.Type{spear.Process: channel.TCP, spear.Kubernetes: channel.TCP} {
		ch, err := f.CreateChannel(testCtx(t), rt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Type() != want {
			t.Errorf("%s: channel type %s, want %s", rt, ch.Type(), want)
		}
	}
	if f.Supports(spear.Kubernetes, channel.GRPC) {
		t.Error("the replaced kubernetes strategy still supports grpc")
	}

	// Per-instance Config.Type overrides the order, within the strategy.
	ch, err := f.CreateChannel(testCtx(t), spear.Process, &channel.Config{Type: channel.Unix})
	if err != nil || ch.Type() != channel.Unix {
		t.Fatalf("Config.Type unix: got %v %v", ch, err)
	}
	id := spear.InstanceID{Runtime: spear.Wasm, Name: "w1"}
	_, err = f.CreateChannelForInstance(testCtx(t), id, &channel.Config{Type: channel.Unix})
	if !errors.Is(err, spear.ErrUnsupportedChannelType) {
		t.Fatalf("wasm over unix: got %v, want spear.ErrUnsupportedChannelType", err)
	}
	wantInstanceErr(t, err, id)

	for name, s := range map[string]channel.Strategy{
		"empty order":  {},
		"unknown type": {Order: []channel.Type{"carrier-pigeon"}},
		"unknown also": {Order: []channel.Type{channel.TCP}, Also: []channel.Type{"smoke"}},
	} {
		if err := f.RegisterStrategy(spear.Process, s); !errors.Is(err, spear.ErrInvalidConfig) && !errors.Is(err, spear.ErrUnsupportedChannelType) {
			t.Errorf("RegisterStrategy with %s: got %v", name, err)
		}
	}
	// The rejected strategies changed nothing.
	if ch, err := f.CreateChannel(testCtx(t), spear.Process, nil); err != nil || ch.Type() != channel.TCP {
		t.Errorf("after rejected strategies: got %v %v, want a tcp channel", ch, err)
	}
}

func TestCreateAndLookUp(t *testing.T) {
	f := newFactory(t, channel.Options{})
	ctx := testCtx(t)

	// By runtime type alone: a fresh, valid id every time.
	seen := map[spear.InstanceID]bool{}
	for range 20 {
		ch, err := f.CreateChannel(ctx, spear.Wasm, nil)
		if err != nil {
			t.Fatal(err)
		}
		id := ch.InstanceID()
		if err := id.Validate(); err != nil || id.Runtime != spear.Wasm || seen[id] {
			t.Fatalf("generated id %s: valid %v, runtime %s, repeated %v", id, err, id.Runtime, seen[id])
		}
		seen[id] = true
	}
	if err := f.CloseAll(); err != nil {
		t.Fatal(err)
	}
	if n := len(f.ActiveInstances()); n != 0 {
		t.Fatalf("%d instances left after CloseAll", n)
	}

	// Get-or-create: the same channel back, the first config kept.
	id := spear.InstanceID{Namespace: "ns", Runtime: spear.Process, Name: "web-1"}
	ch, err := f.CreateChannelForInstance(ctx, id, &channel.Config{Type: channel.TCP})
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.CreateChannelForInstance(ctx, id, &channel.Config{Type: channel.Unix})
	if err != nil || again != ch || again.Type() != channel.TCP {
		t.Fatalf("second CreateChannelForInstance: got %v (%v), want the first channel", again, err)
	}
	if got, ok := f.Get(id); !ok || got != ch {
		t.Fatal("Get does not return the channel")
	}

	ids := []spear.InstanceID{
		{Runtime: spear.Wasm, Name: "b"},
		{Runtime: spear.Process, Name: "z"},
		{Runtime: spear.Process, Name: "a"},
		{Namespace: "aa", Runtime: spear.Kubernetes, Name: "pod"},
	}
	for _, id := range ids {
		if _, err := f.CreateChannelForInstance(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	got := f.ActiveInstances()
	var names []string
	for _, id := range got {
		names = append(names, id.String())
	}
	want := []string{"aa:kubernetes:pod", "ns:process:web-1", "process:a", "process:z", "wasm:b"}
	if !slices.Equal(names, want) {
		t.Fatalf("ActiveInstances = %v, want %v", names, want)
	}

	if err := f.CloseChannel(id); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Get(id); ok {
		t.Fatal("Get finds a closed channel")
	}
	if err := f.CloseChannel(id); err != nil {
		t.Fatalf("closing an unknown channel: %v", err)
	}
	// A new channel under a closed one's id is a new channel.
	fresh, err := f.CreateChannelForInstance(ctx, id, nil)
	if err != nil || fresh == ch {
		t.Fatalf("re-creating a closed instance's channel: %v %v", fresh, err)
	}
	if err := f.CloseAll(); err != nil {
		t.Fatal(err)
	}
	if n := len(f.ActiveInstances()); n != 0 {
		t.Fatalf("%d instances left after CloseAll", n)
	}
	if _, err := f.CreateChannel(ctx, spear.Process, nil); err != nil {
		t.Fatalf("the factory is not usable after CloseAll: %v", err)
	}

	f.Close()
	_, err = f.CreateChannelForInstance(ctx, id, nil)
	if !errors.Is(err, spear.ErrChannelClosed) {
		t.Fatalf("create after Factory.Close: got %v, want spear.ErrChannelClosed", err)
	}
	wantInstanceErr(t, err, id)
}

func TestInvalidInput(t *testing.T) {
	f := newFactory(t, channel.Options{})
	good := spear.InstanceID{Runtime: spear.Process, Name: "ok"}
	for name, cfg := range map[string]channel.Config{
		"negative request timeout": {RequestTimeout: -time.Second},
		"negative auth timeout":    {AuthTimeout: -time.Second},
		"negative misses":          {HeartbeatMisses: -1},
		"negative connections":     {MaxConnections: -1},
		"heartbeat too fast":       {HeartbeatInterval: time.Millisecond},
	} {
		_, err := f.CreateChannelForInstance(testCtx(t), good, &cfg)
		if !errors.Is(err, spear.ErrInvalidConfig) {
			t.Errorf("%s: got %v, want spear.ErrInvalidConfig", name, err)
		}
		wantInstanceErr(t, err, good)
		if _, err := channel.NewFactory(channel.Options{Defaults: cfg}); !errors.Is(err, spear.ErrInvalidConfig) {
			t.Errorf("factory defaults with %s: got %v, want spear.ErrInvalidConfig", name, err)
		}
	}
	if _, err := f.CreateChannelForInstance(testCtx(t), good, &channel.Config{Type: "pigeon"}); !errors.Is(err, spear.ErrUnsupportedChannelType) {
		t.Errorf("unknown type: got %v, want spear.ErrUnsupportedChannelType", err)
	}
	for _, id := range []spear.InstanceID{
		{Runtime: spear.Process, Name: "Bad_Name"},
		{Runtime: spear.Process},
		{Name: "no-runtime"},
		{Runtime: spear.Process, Name: "x", Namespace: "-ns"},
	} {
		if _, err := f.CreateChannelForInstance(testCtx(t), id, nil); !errors.Is(err, spear.ErrInvalidInstanceID) {
			t.Errorf("id %#v: got %v, want spear.ErrInvalidInstanceID", id, err)
		}
	}
	if _, err := f.CreateChannel(testCtx(t), spear.RuntimeType(9), nil); !errors.Is(err, spear.ErrInvalidInstanceID) && !errors.Is(err, spear.ErrUnsupportedRuntime) {
		t.Errorf("unknown runtime: got %v", err)
	}
	if n := len(f.ActiveInstances()); n != 0 {
		t.Fatalf("invalid input left %d channels", n)
	}
}

func TestSocketFiles(t *testing.T) {
	parent := t.TempDir()
	f := newFactory(t, channel.Options{SocketDir: parent})
	a := newChannel(t, f, channel.Unix, channel.Config{})
	b := newChannel(t, f, channel.Unix, channel.Config{})
	pa, pb := a.Credentials().Address, b.Credentials().Address
	if pa == pb {
		t.Fatalf("two instances share socket %s", pa)
	}
	dir := filepath.Dir(pa)
	if filepath.Dir(dir) != parent || filepath.Dir(pb) != dir {
		t.Fatalf("sockets %s and %s are not in one directory under %s", pa, pb, parent)
	}
	wantMode(t, dir, os.ModeDir|0o700)
	wantMode(t, pa, os.ModeSocket|0o600)
	wantMode(t, pb, os.ModeSocket|0o600)

	a.Close()
	if _, err := os.Stat(pa); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s still there after Close: %v", pa, err)
	}
	if _, err := os.Stat(pb); err != nil {
		t.Errorf("closing one channel removed another's socket: %v", err)
	}
	f.Close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket directory %s still there after Factory.Close: %v", dir, err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Factory.Close: %v", err)
	}
}

func wantMode(t testing.TB, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModeType | os.ModePerm); got != want {
		t.Errorf("%s has mode %s, want %s", path, got, want)
	}
}

// TestConnectionCaps fills the factory-wide and per-instance connection
// caps, checks extra connections are refused without disturbing bound
// ones, and then lets many connections come and go in every way one can
// end: every place they held must be given back.
func TestConnectionCaps(t *testing.T) {
	f := newFactory(t, channel.Options{MaxConnections: 2})
	// x has its own listener (caps checked before the handshake), y the
	// shared one (checked after it).
	x := newChannel(t, f, channel.Unix, channel.Config{MaxConnections: 1, AuthTimeout: 100 * time.Millisecond})
	y := newChannel(t, f, channel.TCP, channel.Config{MaxConnections: 1})
	crX, crY := x.Credentials(), y.Credentials()

	for range 5 {
		// Per instance, own listener: the second connection is refused
		// before any handshake, the first stays bound.
		cx := admit(t, crX)
		waitConnected(t, x)
		connects := x.Stats().Connects
		_, err := connectAs(t, crX, crX.ID, crX.Secret)
		wantRemoteCode(t, err, spear.CodeResourceExhausted)
		wantStillServed(t, x, connects)

		cy := admit(t, crY)
		waitConnected(t, y)
		// Factory-wide: both places are taken.
		_, err = connectAs(t, crY, crY.ID, crY.Secret)
		wantRemoteCode(t, err, spear.CodeResourceExhausted)
		wantStillServed(t, x, connects)

		// Per instance, shared listener: refused once the handshake has
		// proved who it is, instead of an AUTH_RESPONSE.
		cx.Close()
		waitDisconnected(t, x)
		connects = y.Stats().Connects
		refused := y.Stats().Errors["auth"]
		// Past the factory cap once x has given its place back; the
		// refusal that counts against y is the per-instance one.
		eventually(t, func() bool {
			c, err := connectAs(t, crY, crY.ID, crY.Secret)
			c.Close()
			var re *spear.RemoteError
			if err == nil || !errors.As(err, &re) || re.Code != spear.CodeResourceExhausted {
				t.Fatalf("over-cap connection: %v, want a RESOURCE_EXHAUSTED refusal of the handshake", err)
			}
			return y.Stats().Errors["auth"] > refused
		}, func() string { return "no refusal counted against the instance's own cap" })
		wantStillServed(t, y, connects)
		cy.Close()
		waitDisconnected(t, y)

		// Refused handshakes: a wrong secret, and silence.
		conn, err := connectAs(t, crX, crX.ID, []byte("wrong"))
		wantAuthFailed(t, conn, err)
		if _, err := readUntilClosed(dial(t, crX)); !errors.Is(err, spear.ErrChannelClosed) {
			t.Fatalf("silent peer: %v", err)
		}
		// A connection replaced by a newer one of the same instance.
		y.Close() // make y's per-instance cap of 1 no obstacle: use a fresh one
		y = newChannel(t, f, channel.TCP, channel.Config{MaxConnections: 2})
		crY = y.Credentials()
		first := admit(t, crY)
		waitConnected(t, y)
		second := admit(t, crY)
		if _, err := readUntilClosed(first); !errors.Is(err, spear.ErrChannelClosed) {
			t.Fatalf("replaced connection: %v", err)
		}
		second.Close()
		waitDisconnected(t, y)
		y.Close()
		y = newChannel(t, f, channel.TCP, channel.Config{MaxConnections: 1})
		crY = y.Credentials()
	}
	// Everything came and went; both caps admit connections again.
	admit(t, crX)
	admit(t, crY)
	waitConnected(t, x)
	waitConnected(t, y)
}

// admit connects and authenticates as cr's instance. Caps are given back
// just after a connection ends, so a refusal for a cap is retried (until
// the test deadline: a place that is never given back fails the test).
func admit(t testing.TB, cr channel.Credentials) transport.Conn {
	t.Helper()
	var conn transport.Conn
	eventually(t, func() bool {
		c, err := connectAs(t, cr, cr.ID, cr.Secret)
		var re *spear.RemoteError
		if errors.As(err, &re) && re.Code == spear.CodeResourceExhausted {
			c.Close()
			return false
		}
		if err != nil {
			t.Fatalf("connect as %s: %v", cr.ID, err)
		}
		conn = c
		return true
	}, func() string { return "no connection admitted for " + cr.ID.String() })
	return conn
}

func wantRemoteCode(t testing.TB, err error, code spear.Code) {
	t.Helper()
	var re *spear.RemoteError
	if !errors.As(err, &re) || re.Code != code {
		t.Fatalf("got %v, want a remote error with code %s", err, code)
	}
}

// wantStillServed checks ch still has the connection it had when it had
// connects connections bound in all: not replaced, not dropped.
func wantStillServed(t testing.TB, ch *channel.Channel, connects uint64) {
	t.Helper()
	if !ch.IsConnected() || ch.Stats().Connects != connects {
		t.Fatalf("instance %s: connected %v after %d connections bound, want still the connection bound %d-th",
			ch.InstanceID(), ch.IsConnected(), ch.Stats().Connects, connects)
	}
}

func wantInstanceErr(t testing.TB, err error, id spear.InstanceID) {
	t.Helper()
	var ie *spear.InstanceError
	if !errors.As(err, &ie) || ie.ID != id {
		t.Errorf("error %v is not a *spear.InstanceError naming %s", err, id)
	}
}
