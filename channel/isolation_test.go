package channel_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/wire"
)

// Isolation under load: many instances, each with many requests in flight
// at once, and every answer comes back on the right channel from the right
// instance with the right payload.
const (
	isoInstances = 20
	isoInFlight  = 50 // concurrent requests per instance
	isoRounds    = 2  // requests each of those goroutines makes in turn
)

func TestIsolationUnderLoad(t *testing.T) {
	for _, typ := range channel.Types() {
		t.Run(string(typ), func(t *testing.T) {
			testIsolation(t, typ)
		})
	}
}

func testIsolation(t *testing.T, typ channel.Type) {
	f := newFactory(t, channel.Options{})
	ctx := testCtx(t)
	t0 := time.Now()
	chans := make([]*channel.Channel, isoInstances)
	for i := range chans {
		chans[i] = newChannel(t, f, typ, channel.Config{})
		if typ == channel.Memory {
			startInProcess(t, chans[i], nil)
		} else {
			startChild(t, chans[i])
		}
	}
	for _, ch := range chans {
		waitConnected(t, ch)
	}
	t.Logf("connected: %s", time.Since(t0))

	var wg sync.WaitGroup
	errs := make(chan error, isoInstances*isoInFlight)
	for i, ch := range chans {
		for j := range isoInFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range isoRounds {
					// A nonce per request: an answer meant for another
					// request of the same instance would not match either.
					payload := fmt.Sprintf("%d.%d.%d.%s", i, j, r, nonce())
					if err := echo(ctx, ch, payload); err != nil {
						errs <- fmt.Errorf("instance %d request %d.%d: %w", i, j, r, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("requests done: %s", time.Since(t0))
	close(errs)
	var failed []string
	for err := range errs {
		failed = append(failed, err.Error())
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d request streams failed; first ones:\n%s", len(failed), isoInstances*isoInFlight,
			strings.Join(failed[:min(len(failed), 5)], "\n"))
	}
	// Each channel saw exactly its own traffic: a request and an answer per
	// call, plus at most a few heartbeats.
	for i, ch := range chans {
		st := ch.Stats()
		calls := uint64(isoInFlight * isoRounds)
		if st.Latency.Count != calls {
			t.Errorf("instance %d: %d request latencies recorded, want %d", i, st.Latency.Count, calls)
		}
		if st.MessagesSent < calls || st.MessagesReceived < calls || st.MessagesSent > calls+20 {
			t.Errorf("instance %d: sent %d and received %d messages for %d calls", i, st.MessagesSent, st.MessagesReceived, calls)
		}
		if len(st.Errors) != 0 {
			t.Errorf("instance %d: errors counted: %v", i, st.Errors)
		}
	}
}

func nonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestReceiveStreamAndStats: one-way messages from the instance arrive in
// order through Receive, streams deliver every chunk, and the channel's
// statistics account for the traffic plausibly.
func TestReceiveStreamAndStats(t *testing.T) {
	for _, typ := range channel.Types() {
		t.Run(string(typ), func(t *testing.T) {
			f := newFactory(t, channel.Options{})
			ch := newChannel(t, f, typ, channel.Config{})
			startInProcess(t, ch, nil)
			waitConnected(t, ch)
			ctx := testCtx(t)
			start := time.Now()

			// The handler sends them (sdk.Instance.Send), so that the
			// instance's side of the connection surely is up.
			for i := range 5 {
				inv := channel.Invocation{Method: "send", Payload: []byte(fmt.Sprintf("note-%d", i))}
				if out, err := channel.Execute(ctx, ch, inv); err != nil || string(out) != "sent" {
					t.Fatalf("send: %q %v", out, err)
				}
			}
			for i := range 5 {
				m, err := ch.Receive(ctx)
				if err != nil || m.Type != wire.TypeMessage || string(m.Payload) != fmt.Sprintf("note-%d", i) {
					t.Fatalf("message %d: got %s %q %v", i, m.Type, m.Payload, err)
				}
			}

			st, err := channel.ExecuteStream(ctx, ch, channel.Invocation{Method: "stream", Payload: []byte("7")})
			if err != nil {
				t.Fatal(err)
			}
			var chunks []string
			for {
				b, err := st.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(b) > 0 {
					chunks = append(chunks, string(b))
				}
			}
			st.Close()
			if len(chunks) != 7 || chunks[0] != "chunk-0" || chunks[6] != "chunk-6" {
				t.Fatalf("stream chunks %q, want chunk-0 to chunk-6", chunks)
			}

			const calls, size = 40, 1000
			payload := strings.Repeat("p", size)
			for range calls {
				if err := echo(ctx, ch, payload); err != nil {
					t.Fatal(err)
				}
			}
			took := time.Since(start)
			s := ch.Stats()
			// Out: 5+40 requests and a stream request; in: 5+40 answers, 5
			// messages and 8 stream frames, each with its 16-byte header.
			if s.MessagesSent < 5+calls+1 || s.MessagesReceived < 5+calls+5+8 {
				t.Errorf("messages sent %d, received %d; too few", s.MessagesSent, s.MessagesReceived)
			}
			if s.BytesSent < calls*(wire.HeaderSize+size) || s.BytesReceived < calls*(wire.HeaderSize+size) {
				t.Errorf("bytes sent %d, received %d; less than the payloads", s.BytesSent, s.BytesReceived)
			}
			if s.BytesSent > 2*calls*(wire.HeaderSize+size+100) {
				t.Errorf("bytes sent %d; far more than the traffic", s.BytesSent)
			}
			l := s.Latency
			if l.Count != 5+calls || l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.Max || l.Mean <= 0 || l.Max > took {
				t.Errorf("latency %+v for %d calls in %s: implausible", l, 5+calls, took)
			}
			if s.Connects != 1 || s.Uptime <= 0 || len(s.Errors) != 0 {
				t.Errorf("connects %d, uptime %s, errors %v", s.Connects, s.Uptime, s.Errors)
			}
		})
	}
}
