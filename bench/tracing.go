package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/sdk"
)

// The invocation rows measure the agent's own path, Agent.Invoke: an
// instance picked from the pool, metrics recorded, and, with tracing on,
// spans and trace context in the request's metadata.
//
//   - invoke64: Agent.Invoke with tracing off against channel.Execute on
//     the same kind of channel (unix, an SDK instance echoing 64 bytes):
//     what the agent adds to a bare channel round trip.
//   - traced64: Agent.Invoke with tracing on (every invocation sampled,
//     spans batched to an exporter that drops them) against the same
//     agent with tracing off: what tracing costs when it is on. Off, the
//     tracing hooks allocate nothing (agent's TestTracingOffCostsNothing).

// invokePair compares an agent invocation, traced when traced is set,
// with the baseline: an untraced invocation when traced, else a bare
// channel.Execute.
func invokePair(traced bool) func(ctx context.Context) (*pair, error) {
	return func(ctx context.Context) (*pair, error) {
		const size = 64
		plain, err := newEchoAgent(ctx, nil)
		if err != nil {
			return nil, err
		}
		if !traced {
			e, err := newEchoChannel(ctx, spear.Process, channel.Unix)
			if err != nil {
				plain.close()
				return nil, err
			}
			return &pair{ours: serial(plain.invoke(size)), base: serial(e.execute(size)), close: func() { plain.close(); e.close() }}, nil
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		on, err := newEchoAgent(ctx, tp)
		if err != nil {
			plain.close()
			_ = tp.Shutdown(ctx)
			return nil, err
		}
		return &pair{ours: serial(on.invoke(size)), base: serial(plain.invoke(size)), close: func() {
			on.close()
			plain.close()
			_ = tp.Shutdown(context.Background())
		}}, nil
	}
}

// echoAgent is an agent with one function, "echo", whose one instance is
// an in-process SDK instance on a unix channel.
type echoAgent struct {
	a     *agent.Agent
	close func()
}

func newEchoAgent(ctx context.Context, tp trace.TracerProvider) (*echoAgent, error) {
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		return nil, err
	}
	rt := &echoRuntime{factory: f}
	cfg := agent.Config{Functions: []agent.FunctionConfig{{Name: "echo", Runtime: "process", MinInstances: 1,
		Spec: process.Spec{Command: "in-process"}}}}
	opts := agent.Options{Runtimes: []runtime.Runtime{rt}}
	if tp != nil {
		opts.TracerProvider = tp
	}
	a, err := agent.New(cfg, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	e := &echoAgent{a: a, close: func() {
		_ = a.Close(context.Background())
		f.Close()
	}}
	// Wait for the instance, so that no round times its start.
	if _, err := a.Invoke(ctx, agent.Invocation{Function: "echo", Payload: []byte("warm")}); err != nil {
		e.close()
		return nil, fmt.Errorf("first invocation: %w", err)
	}
	return e, nil
}

func (e *echoAgent) invoke(size int) func() error {
	inv := agent.Invocation{Function: "echo", Payload: payload(size)}
	return func() error {
		res, err := e.a.Invoke(context.Background(), inv)
		if err != nil {
			return err
		}
		if len(res.Payload) != size {
			return errShortEcho
		}
		return nil
	}
}

// echoRuntime starts instances as in-process SDK instances that echo,
// on the factory's channel for process instances (unix).
type echoRuntime struct {
	factory *channel.Factory
	wg      sync.WaitGroup
}

func (r *echoRuntime) Type() spear.RuntimeType { return spear.Process }

func (r *echoRuntime) Start(ctx context.Context, id spear.InstanceID, set runtime.Settings, _ runtime.Spec) (runtime.Instance, error) {
	ch, err := r.factory.CreateChannelForInstance(ctx, id, set.Channel)
	if err != nil {
		return nil, err
	}
	cr := ch.Credentials()
	in, err := sdk.New(sdk.Options{ID: cr.ID, Secret: cr.Secret, Channel: string(cr.Type), Address: cr.Address,
		Handler: sdk.HandlerFunc(func(_ context.Context, req *sdk.Request) ([]byte, error) { return req.Payload, nil })})
	if err != nil {
		ch.Close()
		return nil, err
	}
	inst := &echoInstance{id: id, function: set.Function, ch: ch, done: make(chan struct{})}
	sctx, cancel := context.WithCancel(context.Background())
	inst.stop = cancel
	r.wg.Go(func() {
		_ = in.Serve(sctx)
		ch.Close()
		close(inst.done)
	})
	if err := ch.WaitConnected(ctx); err != nil {
		cancel()
		<-inst.done
		return nil, err
	}
	return inst, nil
}

func (r *echoRuntime) Stop(ctx context.Context, inst runtime.Instance) error {
	in, ok := inst.(*echoInstance)
	if !ok {
		return errors.New("not an echo instance")
	}
	in.stop()
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *echoRuntime) Close(context.Context) error {
	r.wg.Wait()
	return nil
}

// echoInstance is an echoRuntime instance.
type echoInstance struct {
	id       spear.InstanceID
	function string
	ch       *channel.Channel
	stop     context.CancelFunc
	done     chan struct{}
}

func (in *echoInstance) ID() spear.InstanceID      { return in.id }
func (in *echoInstance) Channel() *channel.Channel { return in.ch }
func (in *echoInstance) Done() <-chan struct{}     { return in.done }
func (in *echoInstance) Logs(int) []string         { return nil }
func (in *echoInstance) Info() runtime.Info {
	status := runtime.StatusRunning
	select {
	case <-in.done:
		status = runtime.StatusStopped
	default:
	}
	return runtime.Info{ID: in.id, Function: in.function, Status: status}
}
