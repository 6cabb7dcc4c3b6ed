package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/sdk"
)

// testTimeout bounds every wait in these tests: generous, for a loaded
// machine; a passing test never waits that long.
const testTimeout = 30 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// fakeType is a runtime type of the tests' own, with fakeSpec as its spec,
// registered as a runtime package registers its type.
var fakeType = spear.RegisterRuntimeType("agent-fake")

// fakeSpec is fakeType's spec: one required field.
type fakeSpec struct {
	Image string `json:"image"`
}

func (fakeSpec) RuntimeType() spear.RuntimeType { return fakeType }

func (s fakeSpec) Validate() error {
	if s.Image == "" {
		return runtime.BadField("image", "required")
	}
	return nil
}

func init() {
	runtime.Register(runtime.Kind{Type: fakeType, DecodeSpec: runtime.DecodeJSON[fakeSpec], MaxConcurrency: 2})
}

// newTestFactory returns a factory whose process and fake instances use
// memory channels, so that fake instances can run in-process.
func newTestFactory(t *testing.T) *channel.Factory {
	t.Helper()
	mem := channel.Strategy{Order: []channel.Type{channel.Memory}}
	f, err := channel.NewFactory(channel.Options{
		SocketDir:  t.TempDir(),
		Strategies: map[spear.RuntimeType]channel.Strategy{spear.Process: mem, fakeType: mem},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// fakeRuntime runs instances in-process over memory channels, serving
// fakeHandler. It stands in for the real runtimes in the agent's tests.
type fakeRuntime struct {
	typ  spear.RuntimeType
	f    *channel.Factory
	gate chan struct{} // method "wait" blocks until it is closed
	// failStarts makes that many of the next starts fail.
	failStarts atomic.Int32
	// takenStarts makes that many of the next starts find their name taken.
	takenStarts atomic.Int32
	starts      atomic.Int32
	flaky       atomic.Int32 // calls of method "flaky"

	mu       sync.Mutex
	insts    map[spear.InstanceID]*fakeInstance
	sick     map[spear.InstanceID]bool          // method "work" fails there
	delay    map[spear.InstanceID]time.Duration // method "work" takes this long there
	work     time.Duration                      // and this long elsewhere
	lastSpec runtime.Spec                       // of the latest Start
	wg       sync.WaitGroup
}

func newFakeRuntime(t *testing.T, typ spear.RuntimeType, f *channel.Factory) *fakeRuntime {
	return &fakeRuntime{typ: typ, f: f, gate: make(chan struct{}), insts: map[spear.InstanceID]*fakeInstance{},
		sick: map[spear.InstanceID]bool{}, delay: map[spear.InstanceID]time.Duration{}}
}

var _ runtime.Runtime = (*fakeRuntime)(nil)

func (r *fakeRuntime) Type() spear.RuntimeType { return r.typ }

func (r *fakeRuntime) Start(ctx context.Context, id spear.InstanceID, set runtime.Settings, spec runtime.Spec) (runtime.Instance, error) {
	r.starts.Add(1)
	r.mu.Lock()
	r.lastSpec = spec
	r.mu.Unlock()
	if r.failStarts.Add(-1) >= 0 {
		return nil, spear.InstanceErr(id, "start", errors.New("fake start failure"))
	}
	r.failStarts.Store(0)
	if r.takenStarts.Add(-1) >= 0 {
		return nil, spear.InstanceErr(id, "start", fmt.Errorf("%w: the name is taken", spear.ErrInvalidInstanceID))
	}
	r.takenStarts.Store(0)
	ch, err := r.f.CreateChannelForInstance(ctx, id, set.Channel)
	if err != nil {
		return nil, err
	}
	cr := ch.Credentials()
	in := &fakeInstance{id: id, function: set.Function, ch: ch, created: time.Now(), done: make(chan struct{}), status: runtime.StatusStarting,
		out: runtime.NewOutput(nil, 100)}
	sdkIn, err := sdk.New(sdk.Options{
		ID: cr.ID, Secret: cr.Secret, Channel: string(cr.Type), Address: cr.Address,
		Handler: sdk.HandlerFunc(func(ctx context.Context, req *sdk.Request) ([]byte, error) {
			if req.Method == "log" { // a line of output, as a process prints one
				in.out.Line("stdout", string(req.Payload))
				return nil, nil
			}
			return r.handle(ctx, id, req)
		}),
	})
	if err != nil {
		ch.Close()
		return nil, err
	}
	var serveCtx context.Context
	serveCtx, in.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = sdkIn.Serve(serveCtx)
		ch.Close()
		in.out.Close()
		in.mu.Lock()
		in.status = runtime.StatusStopped
		if in.reason == "" {
			in.reason = "exited"
		}
		in.mu.Unlock()
		close(in.done)
	}()
	if err := ch.WaitConnected(ctx); err != nil {
		in.stop("start failed")
		<-in.done
		return nil, err
	}
	in.mu.Lock()
	in.status = runtime.StatusRunning
	in.mu.Unlock()
	r.mu.Lock()
	r.insts[id] = in
	r.mu.Unlock()
	return in, nil
}

// handle is the fake instances' function: "" answers "<id>|<payload>",
// "wait" blocks until the gate opens, "fail" fails, "stream" writes the
// payload's words as chunks, "work" takes the instance's delay and fails
// on a sick instance.
func (r *fakeRuntime) handle(ctx context.Context, id spear.InstanceID, req *sdk.Request) ([]byte, error) {
	switch req.Method {
	case "":
		return []byte(id.String() + "|" + string(req.Payload)), nil
	case "wait":
		select {
		case <-r.gate:
			return []byte(id.String()), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "fail":
		return nil, sdk.Error(spear.CodeInternal, string(req.Payload))
	case "work":
		r.mu.Lock()
		d, ok := r.delay[id]
		if !ok {
			d = r.work
		}
		sick := r.sick[id]
		r.mu.Unlock()
		if d > 0 {
			time.Sleep(d)
		}
		if sick {
			return nil, sdk.Error(spear.CodeInternal, "sick")
		}
		return []byte(id.String()), nil
	case "unavailable":
		return nil, sdk.Error(spear.CodeUnavailable, "busy")
	case "flaky":
		if r.flaky.Add(1) == 1 {
			return nil, sdk.Error(spear.CodeUnavailable, "try again")
		}
		return []byte("ok"), nil
	case "stream":
		for _, w := range strings.Fields(string(req.Payload)) {
			if _, err := req.Write([]byte(w)); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	return nil, sdk.Error(spear.CodeNotFound, "no method "+req.Method)
}

func (r *fakeRuntime) Stop(ctx context.Context, inst runtime.Instance) error {
	in := inst.(*fakeInstance)
	in.stop("stopped")
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *fakeRuntime) Close(ctx context.Context) error {
	r.mu.Lock()
	insts := make([]*fakeInstance, 0, len(r.insts))
	for _, in := range r.insts {
		insts = append(insts, in)
	}
	r.mu.Unlock()
	for _, in := range insts {
		_ = r.Stop(ctx, in)
	}
	r.wg.Wait()
	return nil
}

// crash makes instance id die as if its process were killed.
func (r *fakeRuntime) crash(t *testing.T, id spear.InstanceID) {
	t.Helper()
	r.mu.Lock()
	in := r.insts[id]
	r.mu.Unlock()
	if in == nil {
		t.Fatalf("no instance %s", id)
	}
	in.stop("killed")
}

// setSick makes method "work" fail on instance id, or work again.
func (r *fakeRuntime) setSick(id spear.InstanceID, sick bool) {
	r.mu.Lock()
	r.sick[id] = sick
	r.mu.Unlock()
}

// ids returns the ids of the instances started and not yet stopped.
func (r *fakeRuntime) ids() []spear.InstanceID {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []spear.InstanceID
	for id, in := range r.insts {
		if !closed(in.done) {
			out = append(out, id)
		}
	}
	return out
}

type fakeInstance struct {
	id       spear.InstanceID
	function string
	ch       *channel.Channel
	created  time.Time
	cancel   context.CancelFunc
	done     chan struct{}
	out      *runtime.Output // what the "log" method writes

	mu     sync.Mutex
	status runtime.Status
	reason string
}

func (in *fakeInstance) stop(reason string) {
	in.mu.Lock()
	if in.reason == "" {
		in.reason = reason
	}
	in.mu.Unlock()
	in.ch.Lost(reason) // like a dying process: its connection goes at once
	in.cancel()
}

func (in *fakeInstance) ID() spear.InstanceID      { return in.id }
func (in *fakeInstance) Channel() *channel.Channel { return in.ch }
func (in *fakeInstance) Done() <-chan struct{}     { return in.done }
func (in *fakeInstance) Logs(n int) []string       { return []string{"log of " + in.id.String()}[:min(n, 1)] }
func (in *fakeInstance) FollowLogs(ctx context.Context, tail int, fn func(string) error) error {
	return in.out.Follow(ctx, tail, fn)
}
func (in *fakeInstance) Info() runtime.Info {
	in.mu.Lock()
	defer in.mu.Unlock()
	return runtime.Info{ID: in.id, Function: in.function, Status: in.status, Reason: in.reason, Created: in.created}
}

// testConfig is a config with one process function "fn" on the fake
// runtime; mod adjusts it.
func testConfig(mod func(*FunctionConfig)) Config {
	fn := FunctionConfig{Name: "fn", Runtime: "process", Spec: process.Spec{Command: "unused"},
		Restart: RestartConfig{InitialBackoff: Duration(time.Millisecond), MaxBackoff: Duration(10 * time.Millisecond)}}
	if mod != nil {
		mod(&fn)
	}
	return Config{Functions: []FunctionConfig{fn}}
}

// newTestAgent returns an agent over fake runtimes, closed when the test
// ends.
func newTestAgent(t *testing.T, cfg Config) (*Agent, *fakeRuntime) {
	t.Helper()
	f := newTestFactory(t)
	rt := newFakeRuntime(t, spear.Process, f)
	a, err := New(cfg, Options{Runtimes: []runtime.Runtime{rt}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return a, rt
}

// eventually polls cond until it holds or the test's deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx := testCtx(t)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(traceChildEnv) != "" { // the test binary as a process instance
		os.Exit(runTraceChild())
	}
	goleak.VerifyTestMain(m)
}
