package auth_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/transport"
)

// fuzzSecret is the secret of the one instance the fuzzed agent expects.
// The fuzzer never sees it: its proofs must all fail.
var fuzzSecret = spear.Secret("a secret the fuzzer does not know")

// FuzzHandshake feeds arbitrary bytes to each side of the handshake.
// toAgent plays the instance's part against Accept; toInstance plays the
// agent's part against Connect. Neither side may panic, hang past the peer
// hanging up, or report success: without the secret no bytes can
// authenticate (the agent's nonce is fresh; the instance's client nonce is
// too).
func FuzzHandshake(f *testing.F) {
	f.Fuzz(func(t *testing.T, toAgent, toInstance []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()

		conn, done := feed(toAgent)
		id, err := auth.Accept(ctx, conn, keys{idA: fuzzSecret}.lookup, testOffer)
		conn.Close()
		done()
		if err == nil || !id.ID.IsZero() {
			t.Fatalf("agent authenticated %v from arbitrary bytes", id)
		}
		if !errors.Is(err, spear.ErrAuthFailed) && !errors.Is(err, spear.ErrInvalidMessage) &&
			!errors.Is(err, spear.ErrChannelClosed) && !errors.Is(err, spear.ErrConnectionFailed) {
			t.Fatalf("agent error %v has no category", err)
		}

		conn, done = feed(toInstance)
		resp, err := auth.Connect(ctx, conn, idA, fuzzSecret)
		conn.Close()
		done()
		if err == nil || resp != nil {
			t.Fatalf("instance accepted an agent from arbitrary bytes: %v", resp)
		}
	})
}

// feed returns a connection whose peer writes data and then hangs up,
// while discarding whatever the side under test writes. done waits for the
// peer's goroutines; call it after closing the connection.
func feed(data []byte) (transport.Conn, func()) {
	a, b := net.Pipe()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(io.Discard, b)
	}()
	go func() {
		defer wg.Done()
		// A pipe write returns once the side under test has read it all
		// (or closed): then hanging up turns its next read into EOF.
		_, _ = b.Write(data)
		b.Close()
	}()
	conn := transport.NewStreamConn(a, transport.Info{Transport: "pipe"}, 1024, testTimeout)
	return conn, wg.Wait
}
