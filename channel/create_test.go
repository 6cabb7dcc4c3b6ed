package channel_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/transport/memory"
)

func TestCreateRefusesAnIDInUse(t *testing.T) {
	f := newFactory(t, channel.Options{})
	ctx := testCtx(t)
	id := spear.InstanceID{Runtime: spear.Process, Name: "taken"}
	ch, err := f.Create(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Create(ctx, id, &channel.Config{Type: channel.TCP})
	if !errors.Is(err, channel.ErrExists) || !errors.Is(err, spear.ErrInvalidInstanceID) {
		t.Fatalf("second Create: %v, want channel.ErrExists", err)
	}
	wantInstanceErr(t, err, id)
	if got, ok := f.Get(id); !ok || got != ch || got.Type() != channel.Unix {
		t.Fatal("the refused Create touched the existing channel")
	}
	// The seed's entry point gets the channel there is.
	if got, err := f.CreateChannelForInstance(ctx, id, nil); err != nil || got != ch {
		t.Fatalf("CreateChannelForInstance: %v, %v; want the existing channel", got, err)
	}
	ch.Close()
	if _, err := f.Create(ctx, id, nil); err != nil {
		t.Fatalf("Create after the channel closed: %v", err)
	}
}

func TestConcurrentCreation(t *testing.T) {
	f := newFactory(t, channel.Options{})
	ctx := testCtx(t)
	const n = 16
	run := func(create func() (*channel.Channel, error)) []*channel.Channel {
		var wg sync.WaitGroup
		got := make([]*channel.Channel, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { got[i], errs[i] = create() })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil && !errors.Is(err, channel.ErrExists) {
				t.Fatalf("creation %d: %v", i, err)
			}
		}
		return got
	}

	// Create: exactly one wins.
	id := spear.InstanceID{Runtime: spear.Process, Name: "race"}
	var won []*channel.Channel
	for _, ch := range run(func() (*channel.Channel, error) { return f.Create(ctx, id, nil) }) {
		if ch != nil {
			won = append(won, ch)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d Creates of one id succeeded, want 1", len(won))
	}

	// Get-or-create: all get the one channel.
	id = spear.InstanceID{Runtime: spear.Process, Name: "shared"}
	chans := run(func() (*channel.Channel, error) { return f.CreateChannelForInstance(ctx, id, nil) })
	for _, ch := range chans {
		if ch == nil || ch != chans[0] {
			t.Fatal("CreateChannelForInstance gave different channels for one id")
		}
	}
}

// gate is a per-instance transport whose Listen waits until the test
// opens the gate, standing in for a slow system call.
type gate struct {
	entered chan struct{} // receives once per Listen that started
	open    chan struct{}
	mu      sync.Mutex
	opened  []transport.Listener
}

// gateTransport registers a gate under a name of its own, and a factory
// whose process instances use it.
func gateTransport(t *testing.T, name string) (*gate, *channel.Factory) {
	g := &gate{entered: make(chan struct{}, 10), open: make(chan struct{})}
	t.Cleanup(transport.Register(transport.Transport{
		Name: name,
		Listen: func(transport.ListenConfig) (transport.Listener, error) {
			g.entered <- struct{}{}
			<-g.open
			ln := memory.Listen()
			g.mu.Lock()
			g.opened = append(g.opened, ln)
			g.mu.Unlock()
			return ln, nil
		},
		Dial: func(ctx context.Context, addr string, _ transport.DialConfig) (transport.Conn, error) {
			return memory.Dial(ctx, addr)
		},
	}))
	f := newFactory(t, channel.Options{Strategies: map[spear.RuntimeType]channel.Strategy{
		spear.Process: {Order: []channel.Type{channel.Type(name)}, Also: []channel.Type{channel.Memory}},
	}})
	return g, f
}

// TestListenHoldsNoLock: while one creation waits in Listen, the factory
// serves everyone else, and the same id waits or is refused.
func TestListenHoldsNoLock(t *testing.T) {
	g, f := gateTransport(t, "gate-nolock")
	ctx := testCtx(t)
	slow := spear.InstanceID{Runtime: spear.Process, Name: "slow"}
	created := make(chan error, 2)
	go func() {
		_, err := f.Create(ctx, slow, nil)
		created <- err
	}()
	<-g.entered

	// Others are not held up.
	fast, err := f.Create(ctx, spear.InstanceID{Runtime: spear.Process, Name: "fast"}, &channel.Config{Type: channel.Memory})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Get(fast.InstanceID()); !ok || len(f.ActiveInstances()) != 1 {
		t.Fatal("the factory does not see the channel created meanwhile")
	}
	// The same id: Create refuses, get-or-create waits for it.
	if _, err := f.Create(ctx, slow, nil); !errors.Is(err, channel.ErrExists) {
		t.Fatalf("Create of an id being created: %v, want channel.ErrExists", err)
	}
	if _, ok := f.Get(slow); ok {
		t.Fatal("Get found a channel still being created")
	}
	got := make(chan *channel.Channel, 1)
	go func() {
		ch, err := f.CreateChannelForInstance(ctx, slow, nil)
		if err != nil {
			t.Error(err)
		}
		got <- ch
	}()

	close(g.open)
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	ch, _ := f.Get(slow)
	if waited := <-got; ch == nil || waited != ch {
		t.Fatal("get-or-create did not get the channel created meanwhile")
	}
	if len(g.entered) != 0 {
		t.Fatal("get-or-create listened a second time")
	}
}

// TestCloseDuringListen: a creation that finishes listening after the
// factory closed fails, and closes what it opened.
func TestCloseDuringListen(t *testing.T) {
	g, f := gateTransport(t, "gate-close")
	ctx := testCtx(t)
	id := spear.InstanceID{Runtime: spear.Process, Name: "late"}
	created := make(chan error, 1)
	go func() {
		_, err := f.Create(ctx, id, nil)
		created <- err
	}()
	<-g.entered
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	close(g.open)
	err := <-created
	if !errors.Is(err, channel.ErrFactoryClosed) || !errors.Is(err, spear.ErrChannelClosed) {
		t.Fatalf("Create across Close: %v, want channel.ErrFactoryClosed", err)
	}
	wantInstanceErr(t, err, id)
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.opened) != 1 {
		t.Fatalf("%d listeners opened, want 1", len(g.opened))
	}
	if _, err := memory.Dial(ctx, g.opened[0].Addr()); !errors.Is(err, spear.ErrConnectionFailed) {
		t.Fatalf("the listener of the failed creation is still open: dial gave %v", err)
	}
}
