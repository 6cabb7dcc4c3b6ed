package sdk_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/sdk"
)

// A result over the payload limit the agent announced fails that one
// request with TOO_LARGE; the connection, and the next request, are fine.
func TestResultOverAgentLimit(t *testing.T) {
	for _, typ := range []channel.Type{channel.Unix, channel.Memory} {
		t.Run(string(typ), func(t *testing.T) {
			f, err := channel.NewFactory(channel.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			rt := spear.Process
			if typ == channel.Memory {
				rt = spear.Wasm
			}
			ctx := testContext(t)
			ch, err := f.CreateChannel(ctx, rt, &channel.Config{Type: typ, MaxPayload: 1024})
			if err != nil {
				t.Fatal(err)
			}
			connected(t, ch, sdk.Options{Handler: sdk.HandlerFunc(func(_ context.Context, r *sdk.Request) ([]byte, error) {
				if r.Method == "big" {
					if r.Streaming() {
						r.Write([]byte("ok"))
					}
					return bytes.Repeat([]byte("x"), 4096), nil
				}
				return []byte("small"), nil
			})})

			_, err = execute(ctx, ch, "big")
			if code, ok := remoteCode(err); !ok || code != spear.CodeTooLarge {
				t.Fatalf("big result: %v, want a TOO_LARGE remote error", err)
			}
			st, err := channel.ExecuteStream(ctx, ch, channel.Invocation{Method: "big"})
			if err != nil {
				t.Fatal(err)
			}
			if b, err := st.Recv(); err != nil || string(b) != "ok" {
				t.Fatalf("first chunk %q, %v", b, err)
			}
			if _, err := st.Recv(); err == io.EOF || !hasCode(err, spear.CodeTooLarge) {
				t.Fatalf("oversized last chunk: %v, want TOO_LARGE", err)
			}
			if out, err := execute(ctx, ch, ""); err != nil || out != "small" {
				t.Fatalf("next request: %q, %v", out, err)
			}
			if !ch.IsConnected() || ch.Stats().Disconnects != 0 {
				t.Fatalf("the connection did not survive: connected %v, stats %+v", ch.IsConnected(), ch.Stats())
			}
		})
	}
}

// A caller without a deadline still waits only the channel's default
// request timeout, and the instance is told so: its handler's context
// carries about that deadline.
func TestDefaultTimeoutTravels(t *testing.T) {
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	ch, err := f.CreateChannel(testContext(t), spear.Process, &channel.Config{Type: channel.Unix, RequestTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	left := make(chan time.Duration, 1)
	connected(t, ch, sdk.Options{Handler: sdk.HandlerFunc(func(ctx context.Context, _ *sdk.Request) ([]byte, error) {
		d, ok := ctx.Deadline()
		if !ok {
			left <- 0
		} else {
			left <- time.Until(d)
		}
		return nil, nil
	})})
	if _, err := channel.Execute(context.Background(), ch, channel.Invocation{}); err != nil {
		t.Fatal(err)
	}
	if d := <-left; d < 50*time.Minute || d > time.Hour {
		t.Fatalf("handler deadline %s away, want about the channel's 1h default", d)
	}
}
