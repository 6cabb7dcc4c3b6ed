package guest_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/sdk/guest"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testID = spear.InstanceID{Runtime: spear.Wasm, Name: "guest"}

// handler is the guest every test runs.
func handler(ctx context.Context, r *guest.Request) ([]byte, error) {
	switch r.Method {
	case "echo":
		return append([]byte(r.Metadata["prefix"]), r.Payload...), nil
	case "write":
		r.Write([]byte("a"))
		r.Write([]byte("b"))
		return []byte("c"), nil
	case "deadline":
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("no deadline")
		}
		return []byte("has deadline"), nil
	case "plain-error":
		return nil, errors.New("it broke")
	}
	return nil, guest.Error(spear.CodeNotFound, "no method "+r.Method)
}

// agent is the agent's end of a guest served over an in-process byte
// pipe: a raw frame connection, already past the handshake.
type agent struct {
	conn   transport.Conn
	served chan error // Serve's result
	done   bool       // result is Serve's result
	result error
	nextID uint64
}

// wait returns Serve's result.
func (a *agent) wait() error {
	if !a.done {
		a.result, a.done = <-a.served, true
	}
	return a.result
}

func startGuest(t *testing.T, secret, agentSecret spear.Secret) (*agent, error) {
	t.Helper()
	return startGuestOffering(t, secret, agentSecret, auth.Offer{SessionID: "s"})
}

// startGuestOffering is startGuest with the agent announcing o.
func startGuestOffering(t *testing.T, secret, agentSecret spear.Secret, o auth.Offer) (*agent, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	agentEnd, guestEnd := net.Pipe()
	a := &agent{
		conn:   transport.NewStreamConn(agentEnd, transport.Info{Transport: "pipe"}, 0, 0),
		served: make(chan error, 1),
		nextID: 1,
	}
	t.Cleanup(func() {
		a.conn.Close()
		guestEnd.Close()
		a.wait()
	})
	go func() {
		a.served <- guest.Serve(context.Background(), guestEnd, guestEnd, guest.Config{ID: testID, Secret: secret, Handler: handler})
	}()
	lookup := func(id spear.InstanceID) (auth.Credentials, bool) {
		return auth.Credentials{Secret: agentSecret}, id == testID
	}
	offer := func(spear.InstanceID, auth.Slot) (auth.Offer, error) { return o, nil }
	_, err := auth.Accept(ctx, a.conn, lookup, offer)
	return a, err
}

func (a *agent) send(t *testing.T, f wire.Frame) uint64 {
	t.Helper()
	if f.ID == 0 && f.Type != wire.TypeHeartbeat {
		f.ID = a.nextID
		a.nextID += 2
	}
	if err := a.conn.WriteFrame(&f); err != nil {
		t.Fatal(err)
	}
	return f.ID
}

func (a *agent) recv(t *testing.T) wire.Frame {
	t.Helper()
	f, err := a.conn.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (a *agent) execute(t *testing.T, req *spearpb.ExecuteRequest, flags wire.Flags) uint64 {
	t.Helper()
	b, _ := proto.Marshal(req)
	return a.send(t, wire.Frame{Type: wire.TypeExecuteRequest, Flags: flags, Payload: b})
}

func (a *agent) signal(t *testing.T, kind spearpb.SignalKind) uint64 {
	t.Helper()
	b, _ := proto.Marshal(&spearpb.Signal{Kind: kind})
	return a.send(t, wire.Frame{Type: wire.TypeSignal, Payload: b})
}

func (a *agent) wantResponse(t *testing.T, id uint64, want string) {
	t.Helper()
	f := a.recv(t)
	var resp spearpb.ExecuteResponse
	if f.Type != wire.TypeExecuteResponse || f.ID != id || proto.Unmarshal(f.Payload, &resp) != nil || string(resp.Payload) != want {
		t.Fatalf("got %s id %d %q, want EXECUTE_RESPONSE id %d %q", f.Type, f.ID, resp.Payload, id, want)
	}
}

func (a *agent) wantError(t *testing.T, id uint64, code spear.Code, msg string) {
	t.Helper()
	f := a.recv(t)
	var e spearpb.Error
	if f.Type != wire.TypeError || f.ID != id || proto.Unmarshal(f.Payload, &e) != nil ||
		spear.Code(e.Code) != code || !strings.Contains(e.Message, msg) {
		t.Fatalf("got %s id %d %v, want ERROR id %d %s %q", f.Type, f.ID, &e, id, code, msg)
	}
}

func (a *agent) wantServed(t *testing.T) {
	t.Helper()
	if err := a.wait(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestServe(t *testing.T) {
	secret := auth.NewSecret()
	a, err := startGuest(t, secret, secret)
	if err != nil {
		t.Fatal(err)
	}

	id := a.execute(t, &spearpb.ExecuteRequest{Method: "echo", Payload: []byte("x"), Metadata: map[string]string{"prefix": "p:"}}, 0)
	a.wantResponse(t, id, "p:x")

	// Output written to a unary request comes ahead of the result.
	a.wantResponse(t, a.execute(t, &spearpb.ExecuteRequest{Method: "write"}, 0), "abc")

	// A streaming request gets each write as a chunk, the result last.
	id = a.execute(t, &spearpb.ExecuteRequest{Method: "write"}, wire.FlagStream)
	for i, want := range []string{"a", "b", "c"} {
		f := a.recv(t)
		end := f.Flags&wire.FlagEnd != 0
		if f.Type != wire.TypeStreamData || f.ID != id || string(f.Payload) != want || end != (i == 2) {
			t.Fatalf("chunk %d: %s flags %d %q", i, f.Type, f.Flags, f.Payload)
		}
	}

	// timeout_ms becomes the handler's deadline.
	a.wantResponse(t, a.execute(t, &spearpb.ExecuteRequest{Method: "deadline", TimeoutMs: 60_000}, 0), "has deadline")
	a.wantError(t, a.execute(t, &spearpb.ExecuteRequest{Method: "deadline"}, 0), spear.CodeInternal, "no deadline")

	// Handler errors keep their code; others are internal errors.
	a.wantError(t, a.execute(t, &spearpb.ExecuteRequest{Method: "nope"}, 0), spear.CodeNotFound, "no method nope")
	a.wantError(t, a.execute(t, &spearpb.ExecuteRequest{Method: "plain-error"}, 0), spear.CodeInternal, "it broke")
	a.wantError(t, a.send(t, wire.Frame{Type: wire.TypeExecuteRequest, Payload: []byte{0xff}}), spear.CodeInvalidMessage, "undecodable")

	// Heartbeats are acknowledged with their payload.
	a.send(t, wire.Frame{Type: wire.TypeHeartbeat, ID: 7, Payload: []byte("hb")})
	if f := a.recv(t); f.Type != wire.TypeHeartbeat || f.Flags&wire.FlagAck == 0 || f.ID != 7 || string(f.Payload) != "hb" {
		t.Fatalf("heartbeat answer: %s flags %d id %d %q", f.Type, f.Flags, f.ID, f.Payload)
	}

	// Paused, the guest refuses requests until resumed.
	a.wantResponse(t, a.signal(t, spearpb.SignalKind_SIGNAL_KIND_PAUSE), "")
	a.wantError(t, a.execute(t, &spearpb.ExecuteRequest{Method: "echo"}, 0), spear.CodeUnavailable, "paused")
	a.wantResponse(t, a.signal(t, spearpb.SignalKind_SIGNAL_KIND_RESUME), "")
	a.wantResponse(t, a.execute(t, &spearpb.ExecuteRequest{Method: "echo", Payload: []byte("y")}, 0), "y")
	a.wantError(t, a.signal(t, spearpb.SignalKind_SIGNAL_KIND_CUSTOM), spear.CodeNotFound, "no handler for signal")

	// Terminate is acknowledged, then Serve returns nil.
	a.wantResponse(t, a.signal(t, spearpb.SignalKind_SIGNAL_KIND_TERMINATE), "")
	a.wantServed(t)
}

func TestServeEndsWithInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(a *agent)
	}{
		{"eof", func(a *agent) { a.conn.Close() }},
		{"close frame", func(a *agent) { a.conn.WriteFrame(&wire.Frame{Type: wire.TypeClose}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret := auth.NewSecret()
			a, err := startGuest(t, secret, secret)
			if err != nil {
				t.Fatal(err)
			}
			tc.end(a)
			a.wantServed(t)
		})
	}
}

func TestServeWrongSecret(t *testing.T) {
	a, err := startGuest(t, auth.NewSecret(), auth.NewSecret())
	if !errors.Is(err, spear.ErrAuthFailed) {
		t.Fatalf("agent: %v, want spear.ErrAuthFailed", err)
	}
	a.conn.Close()
	if err := a.wait(); !errors.Is(err, spear.ErrAuthFailed) {
		t.Fatalf("Serve: %v, want spear.ErrAuthFailed", err)
	}
}

func TestServeMalformedInput(t *testing.T) {
	secret := auth.NewSecret()
	a, err := startGuest(t, secret, secret)
	if err != nil {
		t.Fatal(err)
	}
	// A frame of an unknown protocol version.
	raw := a.conn.(*transport.StreamConn).NetConn()
	hdr := make([]byte, wire.HeaderSize)
	wire.PutHeader(hdr, &wire.Frame{Type: wire.TypeExecuteRequest, ID: 1})
	hdr[4] = 9
	if _, err := raw.Write(hdr); err != nil {
		t.Fatal(err)
	}
	if err := a.wait(); !errors.Is(err, spear.ErrInvalidMessage) {
		t.Fatalf("Serve: %v, want spear.ErrInvalidMessage", err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv(spear.EnvInstanceID, testID.String())
	t.Setenv(spear.EnvSecret, "0a0b")
	cfg, err := guest.ConfigFromEnv(handler)
	if err != nil || cfg.ID != testID || string(cfg.Secret) != "\x0a\x0b" || cfg.Handler == nil {
		t.Fatalf("got %+v, %v", cfg, err)
	}
	t.Setenv(spear.EnvSecret, "not hex")
	if _, err := guest.ConfigFromEnv(handler); !errors.Is(err, spear.ErrConfig) {
		t.Errorf("bad secret: %v", err)
	}
	t.Setenv(spear.EnvInstanceID, "nonsense")
	if _, err := guest.ConfigFromEnv(handler); !errors.Is(err, spear.ErrConfig) {
		t.Errorf("bad id: %v", err)
	}
	if err := guest.Serve(context.Background(), nil, nil, guest.Config{}); !errors.Is(err, spear.ErrInvalidConfig) {
		t.Errorf("no handler: %v", err)
	}
}

// An answer over the agent's announced limit is never written: that
// request alone fails with TOO_LARGE, and the guest serves on.
func TestAnswerOverAgentLimit(t *testing.T) {
	const limit = 64
	secret := auth.NewSecret()
	a, err := startGuestOffering(t, secret, secret, auth.Offer{SessionID: "s", MaxPayload: limit})
	if err != nil {
		t.Fatal(err)
	}
	// The EXECUTE_RESPONSE adds 2 bytes to the payload.
	id := a.execute(t, &spearpb.ExecuteRequest{Method: "echo", Payload: []byte(strings.Repeat("x", limit-1))}, 0)
	a.wantError(t, id, spear.CodeTooLarge, "over the agent's limit of 64")
	id = a.execute(t, &spearpb.ExecuteRequest{Method: "echo", Payload: []byte(strings.Repeat("y", limit-2))}, 0)
	a.wantResponse(t, id, strings.Repeat("y", limit-2))
	id = a.execute(t, &spearpb.ExecuteRequest{Method: "echo", Payload: []byte(strings.Repeat("z", limit+1))}, wire.FlagStream)
	a.wantError(t, id, spear.CodeTooLarge, "over the agent's limit")
}
