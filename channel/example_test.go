package channel_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/sdk"
)

// A channel exists before its instance: the factory sets up where the
// instance will connect and issues its secret; a runtime hands both to the
// instance, which connects and authenticates; then the agent invokes it.
// Here the instance is an SDK instance in this process, over the memory
// transport that wasm instances use.
func ExampleFactory() {
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		panic(err)
	}
	defer f.Close()
	ctx := context.Background()

	ch, err := f.Create(ctx, spear.InstanceID{Runtime: spear.Wasm, Name: "hello"}, nil)
	if err != nil {
		panic(err)
	}

	// What a runtime does: hand the instance its credentials (a child
	// process gets them through ch.Credentials().HandOver).
	cr := ch.Credentials()
	in, err := sdk.New(sdk.Options{
		ID: cr.ID, Secret: cr.Secret, Channel: string(cr.Type), Address: cr.Address,
		Handler: sdk.HandlerFunc(func(ctx context.Context, r *sdk.Request) ([]byte, error) {
			return append([]byte("hello, "), r.Payload...), nil
		}),
	})
	if err != nil {
		panic(err)
	}
	serving, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- in.Serve(serving) }()
	defer func() { stop(); <-done }()

	if err := ch.WaitConnected(ctx); err != nil {
		panic(err)
	}
	out, err := channel.Execute(ctx, ch, channel.Invocation{Payload: []byte("world")})
	fmt.Printf("%s over %s: %q, %v\n", ch.InstanceID(), ch.Type(), out, err)
	// Output: wasm:hello over memory: "hello, world", <nil>
}

// CreateChannelForInstance, the seed's entry point, gets the channel an
// instance has or creates one; Create, which a runtime launching a new
// instance uses, refuses an id that has one.
func ExampleFactory_CreateChannelForInstance() {
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		panic(err)
	}
	defer f.Close()
	ctx := context.Background()
	id := spear.InstanceID{Runtime: spear.Process, Name: "web-1"}

	first, _ := f.CreateChannelForInstance(ctx, id, nil)
	again, _ := f.CreateChannelForInstance(ctx, id, &channel.Config{Type: channel.TCP})
	fmt.Println("same channel:", again == first, "type:", again.Type())

	_, err = f.Create(ctx, id, nil)
	fmt.Println("Create:", errors.Is(err, channel.ErrExists))
	// Output:
	// same channel: true type: unix
	// Create: true
}
