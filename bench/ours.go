package bench

import (
	"context"
	"fmt"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/sdk"
)

// echoChannel is an agent's channel to one in-process SDK instance whose
// handler echoes the payload: the path a real invocation takes, with the
// instance on a goroutine instead of in a child process.
type echoChannel struct {
	ch    *channel.Channel
	close func()
}

// newEchoChannel creates a factory, a channel of type typ for an instance
// of runtime rt, and an SDK instance serving it, and waits until the
// instance is connected.
func newEchoChannel(ctx context.Context, rt spear.RuntimeType, typ channel.Type) (*echoChannel, error) {
	return newEchoChannelWith(ctx, channel.Options{}, rt, typ)
}

// newEchoChannelWith is newEchoChannel with the factory's options; the
// instance dials with the TLS they imply.
func newEchoChannelWith(ctx context.Context, opts channel.Options, rt spear.RuntimeType, typ channel.Type) (*echoChannel, error) {
	f, err := channel.NewFactory(opts)
	if err != nil {
		return nil, err
	}
	ch, err := f.CreateChannel(ctx, rt, &channel.Config{Type: typ})
	if err != nil {
		f.Close()
		return nil, err
	}
	cr := ch.Credentials()
	tlsCfg, err := cr.TLS.ClientConfig(cr.Secret, cr.Address)
	if err != nil {
		f.Close()
		return nil, err
	}
	in, err := sdk.New(sdk.Options{
		ID: cr.ID, Secret: cr.Secret, Channel: string(cr.Type), Address: cr.Address, TLS: tlsCfg,
		Handler: sdk.HandlerFunc(func(_ context.Context, r *sdk.Request) ([]byte, error) {
			return r.Payload, nil
		}),
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	ictx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- in.Serve(ictx) }()
	closeAll := func() {
		stop()
		<-served
		f.Close()
	}
	if err := ch.WaitConnected(ctx); err != nil {
		closeAll()
		return nil, fmt.Errorf("instance did not connect: %w", err)
	}
	return &echoChannel{ch: ch, close: closeAll}, nil
}

// execute returns an operation that runs one invocation with a payload of
// size bytes and checks the echo. It uses the context a caller without a
// deadline would, so the channel's default request timeout applies.
func (e *echoChannel) execute(size int) func() error {
	inv := channel.Invocation{Payload: payload(size)}
	return func() error {
		out, err := channel.Execute(context.Background(), e.ch, inv)
		if err != nil {
			return err
		}
		if len(out) != size {
			return errShortEcho
		}
		return nil
	}
}

// unixPair compares a unix channel round trip of size bytes with a raw
// unix-socket ping-pong of the same size.
func unixPair(ctx context.Context, size int) (*pair, error) {
	e, err := newEchoChannel(ctx, spear.Process, channel.Unix)
	if err != nil {
		return nil, err
	}
	raw, err := newRawUnix(size)
	if err != nil {
		e.close()
		return nil, err
	}
	return &pair{
		ours:  serial(e.execute(size)),
		base:  serial(raw.roundTrip),
		close: func() { e.close(); raw.close() },
	}, nil
}

// grpcPair compares a grpc channel round trip of size bytes with a plain
// grpc-go bidirectional-stream ping-pong of a bytes message of that size.
func grpcPair(ctx context.Context, size int) (*pair, error) {
	e, err := newEchoChannel(ctx, spear.Kubernetes, channel.GRPC)
	if err != nil {
		return nil, err
	}
	raw, err := newGRPCStream(ctx, size)
	if err != nil {
		e.close()
		return nil, err
	}
	return &pair{
		ours:  serial(e.execute(size)),
		base:  serial(raw.roundTrip),
		close: func() { e.close(); raw.close() },
	}, nil
}

// memoryPair compares a memory channel round trip with a ping-pong between
// two goroutines over Go channels.
func memoryPair(ctx context.Context, size int) (*pair, error) {
	e, err := newEchoChannel(ctx, spear.Wasm, channel.Memory)
	if err != nil {
		return nil, err
	}
	raw := newGoChan(size)
	return &pair{
		ours:  serial(e.execute(size)),
		base:  serial(raw.roundTrip),
		close: func() { e.close(); raw.close() },
	}, nil
}

// concurrentCallers is how many goroutines share the connection in the
// concurrent comparison.
const concurrentCallers = 64

// concurrentPair compares 64 callers sharing one unix channel with 64
// callers sharing one grpc-go connection doing unary calls, both with 64
// byte payloads.
func concurrentPair(ctx context.Context) (*pair, error) {
	const size = 64
	e, err := newEchoChannel(ctx, spear.Process, channel.Unix)
	if err != nil {
		return nil, err
	}
	raw, err := newGRPCUnary(ctx, size)
	if err != nil {
		e.close()
		return nil, err
	}
	return &pair{
		ours:  parallel(concurrentCallers, e.execute(size)),
		base:  parallel(concurrentCallers, raw.call),
		close: func() { e.close(); raw.close() },
	}, nil
}
