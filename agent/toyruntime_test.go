package agent_test

// A runtime added from outside the project's runtime packages, as docs/
// architecture.md ("Adding a runtime") describes: its own runtime type,
// its own spec decoded from a function's config, instances that are
// goroutines speaking the protocol through the SDK over the memory
// transport. The daemon serves it, and an invocation reaches it through
// the HTTP API, without a change to any non-test file.

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/client"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/sdk"
)

// toyType is the toy runtime's type, registered as a runtime package
// registers its own.
var toyType = spear.RegisterRuntimeType("toy")

// toySpec is what a toy instance runs: a greeting, which it puts before
// every payload.
type toySpec struct {
	Greeting string `json:"greeting"`
}

func (toySpec) RuntimeType() spear.RuntimeType { return toyType }

func (s toySpec) Validate() error {
	if s.Greeting == "" {
		return runtime.BadField("greeting", "required for a toy function")
	}
	return nil
}

func init() {
	runtime.Register(runtime.Kind{Type: toyType, DecodeSpec: runtime.DecodeJSON[toySpec]})
}

// toyRuntime runs each instance as a goroutine serving the SDK.
type toyRuntime struct {
	factory *channel.Factory
	wg      sync.WaitGroup

	mu    sync.Mutex
	insts map[spear.InstanceID]*toyInstance
}

var _ runtime.Runtime = (*toyRuntime)(nil)

// newToyRuntime is the toy's agent.NewRuntime. Toy instances live in the
// agent's process, so they use memory channels.
func newToyRuntime(env agent.RuntimeEnv) (runtime.Runtime, error) {
	if err := env.Factory.RegisterStrategy(toyType, channel.Strategy{Order: []channel.Type{channel.Memory}}); err != nil {
		return nil, err
	}
	return &toyRuntime{factory: env.Factory, insts: map[spear.InstanceID]*toyInstance{}}, nil
}

func (r *toyRuntime) Type() spear.RuntimeType { return toyType }

func (r *toyRuntime) Start(ctx context.Context, id spear.InstanceID, set runtime.Settings, rspec runtime.Spec) (runtime.Instance, error) {
	spec, set, err := runtime.Accept[toySpec](id, set, rspec, 10*time.Second, time.Second)
	if err != nil {
		return nil, err
	}
	ch, err := r.factory.CreateChannelForInstance(ctx, id, set.Channel)
	if err != nil {
		return nil, err
	}
	cr := ch.Credentials()
	guest, err := sdk.New(sdk.Options{
		ID: cr.ID, Secret: cr.Secret, Channel: string(cr.Type), Address: cr.Address,
		Handler: sdk.HandlerFunc(func(_ context.Context, req *sdk.Request) ([]byte, error) {
			return []byte(spec.Greeting + ", " + string(req.Payload)), nil
		}),
	})
	if err != nil {
		ch.Close()
		return nil, err
	}
	in := &toyInstance{id: id, function: set.Function, ch: ch, created: time.Now(), done: make(chan struct{})}
	var serveCtx context.Context
	serveCtx, in.stop = context.WithCancel(context.Background())
	r.wg.Go(func() {
		_ = guest.Serve(serveCtx)
		ch.Close()
		close(in.done)
	})
	wctx, cancel := context.WithTimeout(ctx, set.StartTimeout)
	defer cancel()
	if err := ch.WaitConnected(wctx); err != nil {
		in.stop()
		<-in.done
		return nil, err
	}
	r.mu.Lock()
	r.insts[id] = in
	r.mu.Unlock()
	return in, nil
}

func (r *toyRuntime) Stop(ctx context.Context, inst runtime.Instance) error {
	in, ok := inst.(*toyInstance)
	if !ok {
		return spear.ErrUnsupportedRuntime
	}
	in.stop()
	select {
	case <-in.done:
		r.mu.Lock()
		delete(r.insts, in.id)
		r.mu.Unlock()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *toyRuntime) Close(ctx context.Context) error {
	r.mu.Lock()
	insts := make([]*toyInstance, 0, len(r.insts))
	for _, in := range r.insts {
		insts = append(insts, in)
	}
	r.mu.Unlock()
	var errs []error
	for _, in := range insts {
		errs = append(errs, r.Stop(ctx, in))
	}
	r.wg.Wait()
	return errors.Join(errs...)
}

type toyInstance struct {
	id       spear.InstanceID
	function string
	ch       *channel.Channel
	created  time.Time
	stop     context.CancelFunc
	done     chan struct{}
}

func (in *toyInstance) ID() spear.InstanceID      { return in.id }
func (in *toyInstance) Channel() *channel.Channel { return in.ch }
func (in *toyInstance) Done() <-chan struct{}     { return in.done }
func (in *toyInstance) Logs(int) []string         { return nil }

func (in *toyInstance) Info() runtime.Info {
	status := runtime.StatusRunning
	select {
	case <-in.done:
		status = runtime.StatusStopped
	default:
	}
	return runtime.Info{ID: in.id, Function: in.function, Status: status, Created: in.created}
}

// TestToyRuntime serves a toy function with the daemon and invokes it
// through the HTTP API.
func TestToyRuntime(t *testing.T) {
	cfg, err := agent.ParseConfig([]byte(`
api: {http_addr: "127.0.0.1:0", grpc_addr: "127.0.0.1:0"}
functions:
  - name: greet
    runtime: toy
    greeting: hello
    min_instances: 1
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Channels.SocketDir = t.TempDir()
	cfg.StateDir = filepath.Join(t.TempDir(), "state") // statedir wants it private: made 0700
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(runCtx, cfg, agent.RunOptions{
			Runtimes: map[spear.RuntimeType]agent.NewRuntime{toyType: newToyRuntime},
			Ready:    func(httpAddr, _ net.Addr) { ready <- httpAddr },
		})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var c *client.Client
	select {
	case addr := <-ready:
		c = &client.Client{Addr: addr.String(), StateDir: cfg.StateDir} // the token is found there
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	res, err := c.Invoke(ctx, "greet", []byte("world"), client.InvokeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Payload) != "hello, world" || res.Instance == "" {
		t.Errorf("invoke = %q from %q, want \"hello, world\" from a toy instance", res.Payload, res.Instance)
	}
	insts, err := c.Instances(ctx, "greet")
	if err != nil || len(insts) != 1 || insts[0].Runtime != "toy" || insts[0].Channel != "memory" {
		t.Errorf("instances = %+v, %v; want one toy instance on a memory channel", insts, err)
	}

	// The toy's own fields are checked at load like any runtime's.
	_, err = agent.ParseConfig([]byte("functions: [{name: g, runtime: toy, greting: hi}]\n"))
	if !errors.Is(err, spear.ErrInvalidConfig) {
		t.Errorf("misspelt toy field: %v, want spear.ErrInvalidConfig", err)
	}
}
