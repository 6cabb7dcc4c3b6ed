package channel_test

import (
	"context"
	"testing"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/sdk"
)

func TestSmokeAllTransports(t *testing.T) {
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, typ := range []channel.Type{channel.Unix, channel.TCP, channel.GRPC, channel.Memory} {
		t.Run(string(typ), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rt := spear.Process
			if typ == channel.Memory {
				rt = spear.Wasm
			}
			ch, err := f.CreateChannel(ctx, rt, &channel.Config{Type: typ})
			if err != nil {
				t.Fatal(err)
			}
			cr := ch.Credentials()
			in, err := sdk.New(sdk.Options{ID: cr.ID, Secret: cr.Secret, Channel: string(cr.Type), Address: cr.Address,
				Handler: sdk.HandlerFunc(func(ctx context.Context, r *sdk.Request) ([]byte, error) {
					return append([]byte(r.Method+":"), r.Payload...), nil
				})})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			ictx, icancel := context.WithCancel(ctx)
			go func() { done <- in.Serve(ictx) }()
			if err := ch.WaitConnected(ctx); err != nil {
				t.Fatal(err)
			}
			out, err := channel.Execute(ctx, ch, channel.Invocation{Method: "m", Payload: []byte("x")})
			if err != nil || string(out) != "m:x" {
				t.Fatalf("got %q %v", out, err)
			}
			icancel()
			<-done
			ch.Close()
		})
	}
}
