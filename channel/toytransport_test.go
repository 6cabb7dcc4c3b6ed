package channel_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/sdk"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/transport/transporttest"
)

// The toy transport shows what adding a transport takes: one
// transport.Register, here from a test, and no change anywhere else. It
// connects over net.Pipe, framed by transport.NewStreamConn, with its
// addresses in a table of its own, as the memory transport does.

const toyName = "toypipe"

// toyListener accepts toy connections at one address.
type toyListener struct {
	addr   string
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	cfg    transport.ListenConfig
}

var (
	toyMu        sync.Mutex
	toyListeners = map[string]*toyListener{}
	toyNext      atomic.Int64
)

func toyListen(cfg transport.ListenConfig) (transport.Listener, error) {
	l := &toyListener{addr: fmt.Sprintf("toy:%d", toyNext.Add(1)), conns: make(chan net.Conn), closed: make(chan struct{}), cfg: cfg}
	toyMu.Lock()
	toyListeners[l.addr] = l
	toyMu.Unlock()
	return l, nil
}

func (l *toyListener) Accept() (transport.Conn, error) {
	select {
	case c := <-l.conns:
		return transport.NewStreamConn(c, transport.Info{Transport: toyName, PeerPID: -1, PeerUID: -1}, l.cfg.MaxPayload, l.cfg.WriteTimeout), nil
	case <-l.closed:
		return nil, fmt.Errorf("%w: toy listener closed", spear.ErrChannelClosed)
	}
}

func (l *toyListener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		toyMu.Lock()
		delete(toyListeners, l.addr)
		toyMu.Unlock()
	})
	return nil
}

func (l *toyListener) Addr() string { return l.addr }

func toyDial(ctx context.Context, addr string, cfg transport.DialConfig) (transport.Conn, error) {
	toyMu.Lock()
	l := toyListeners[addr]
	toyMu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("%w: no toy listener at %q", spear.ErrConnectionFailed, addr)
	}
	mine, theirs := net.Pipe()
	select {
	case l.conns <- theirs:
		return transport.NewStreamConn(mine, transport.Info{Transport: toyName, PeerPID: -1, PeerUID: -1}, cfg.MaxPayload, cfg.WriteTimeout), nil
	case <-l.closed:
	case <-ctx.Done():
	}
	mine.Close()
	theirs.Close()
	return nil, fmt.Errorf("%w: toy listener %s did not accept", spear.ErrConnectionFailed, addr)
}

// registerToy adds the toy transport to the table for the test's length.
func registerToy(t *testing.T) {
	t.Cleanup(transport.Register(transport.Transport{Name: toyName, Listen: toyListen, Dial: toyDial}))
}

func TestToyTransportConformance(t *testing.T) {
	registerToy(t)
	transporttest.Run(t, toyName)
}

// TestToyTransportInvocation runs an invocation through the agent's
// factory and the instance SDK over the toy transport.
func TestToyTransportInvocation(t *testing.T) {
	registerToy(t)
	f := newFactory(t, channel.Options{Strategies: map[spear.RuntimeType]channel.Strategy{
		spear.Process: {Order: []channel.Type{toyName}},
	}})
	ch, err := f.Create(testCtx(t), spear.InstanceID{Runtime: spear.Process, Name: "toy"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cr := ch.Credentials()
	if cr.Type != toyName {
		t.Fatalf("channel type %s, want %s", cr.Type, toyName)
	}
	in, err := sdk.New(sdk.Options{
		ID: cr.ID, Secret: cr.Secret, Channel: string(cr.Type), Address: cr.Address,
		Handler: sdk.HandlerFunc(func(ctx context.Context, r *sdk.Request) ([]byte, error) {
			return append([]byte("toy says "), r.Payload...), nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	served := make(chan error, 1)
	go func() { served <- in.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	if err := ch.WaitConnected(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	out, err := channel.Execute(testCtx(t), ch, channel.Invocation{Payload: []byte("hi")})
	if err != nil || string(out) != "toy says hi" {
		t.Fatalf("Execute over the toy transport: %q, %v", out, err)
	}
	if st := ch.Stats(); st.MessagesReceived == 0 || st.Connects != 1 {
		t.Errorf("stats %+v: the invocation did not go through the channel", st)
	}
}
