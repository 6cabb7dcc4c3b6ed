package auth_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/transport/memory"
	"github.com/spear-go/spear/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds waits that are expected to end long before it.
const testTimeout = 20 * time.Second

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

var (
	idA = spear.InstanceID{Runtime: spear.Process, Name: "fn-a"}
	idB = spear.InstanceID{Runtime: spear.Process, Namespace: "tenant", Name: "fn-b"}
)

// keys is the agent's view: the instances it expects and their secrets.
type keys map[spear.InstanceID]spear.Secret

func (k keys) lookup(id spear.InstanceID) (auth.Credentials, bool) {
	s, ok := k[id]
	return auth.Credentials{Secret: s}, ok
}

func testOffer(spear.InstanceID, auth.Slot) (auth.Offer, error) {
	return auth.Offer{SessionID: "sess-1", Features: []string{"stream", "cancel"}, HeartbeatInterval: 1234, MaxPayload: 4096}, nil
}

// docProof computes a proof from the byte layout docs/protocol.md gives,
// independently of auth.Proof: HMAC-SHA256 over role, 0x00, nonce,
// client nonce, id.
func docProof(secret []byte, role string, nonce, clientNonce []byte, id string) []byte {
	msg := append([]byte(role), 0)
	msg = append(msg, nonce...)
	msg = append(msg, clientNonce...)
	msg = append(msg, id...)
	m := hmac.New(sha256.New, secret)
	m.Write(msg)
	return m.Sum(nil)
}

type acceptResult struct {
	id  spear.InstanceID
	err error
}

// startAccept runs the agent's side on conn and closes conn when it
// returns, as the callers of Accept must on error.
func startAccept(ctx context.Context, conn transport.Conn, k keys) <-chan acceptResult {
	res := make(chan acceptResult, 1)
	go func() {
		id, err := auth.Accept(ctx, conn, k.lookup, testOffer)
		if err != nil {
			conn.Close()
		}
		res <- acceptResult{id.ID, err}
	}()
	return res
}

// pipe returns both ends of an in-process connection, closed at cleanup.
func pipe(t *testing.T) (agent, instance transport.Conn) {
	a, b := memory.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// handshake runs both sides and returns both results.
func handshake(t *testing.T, k keys, id spear.InstanceID, secret spear.Secret) (acceptResult, *codec.AuthResponse, error) {
	t.Helper()
	a, b := pipe(t)
	res := startAccept(testCtx(t), a, k)
	resp, err := auth.Connect(testCtx(t), b, id, secret)
	if err != nil {
		b.Close()
	}
	return <-res, resp, err
}

func TestHandshake(t *testing.T) {
	sa, sb := auth.NewSecret(), auth.NewSecret()
	if len(sa) != auth.SecretSize || bytes.Equal(sa, sb) {
		t.Fatalf("NewSecret gave %d bytes, or twice the same", len(sa))
	}
	k := keys{idA: sa, idB: sb}
	for _, id := range []spear.InstanceID{idA, idB} {
		acc, resp, err := handshake(t, k, id, k[id])
		if err != nil || acc.err != nil {
			t.Fatalf("%s: instance: %v; agent: %v", id, err, acc.err)
		}
		if acc.id != id {
			t.Errorf("agent authenticated %s, want %s", acc.id, id)
		}
		if resp.SessionID != "sess-1" || resp.HeartbeatIntervalMs != 1234 || resp.MaxPayload != 4096 ||
			len(resp.Features) != 2 || resp.Features[0] != "stream" {
			t.Errorf("instance got AUTH_RESPONSE %v, want the agent's offer", resp)
		}
	}
}

// wantRefused checks that both sides failed with ErrAuthFailed and that
// the instance learned it from an AUTH_FAILED error frame.
func wantRefused(t *testing.T, acc acceptResult, err error) {
	t.Helper()
	if !errors.Is(acc.err, spear.ErrAuthFailed) || !acc.id.IsZero() {
		t.Errorf("agent: got %v %v, want ErrAuthFailed and no id", acc.id, acc.err)
	}
	var re *spear.RemoteError
	if !errors.Is(err, spear.ErrAuthFailed) || !errors.As(err, &re) || re.Code != spear.CodeAuthFailed {
		t.Errorf("instance: got %v, want a RemoteError AUTH_FAILED matching ErrAuthFailed", err)
	}
}

func TestWrongSecret(t *testing.T) {
	acc, _, err := handshake(t, keys{idA: auth.NewSecret()}, idA, auth.NewSecret())
	wantRefused(t, acc, err)
}

// TestOtherInstancesSecret: instance A's secret does not open B.
func TestOtherInstancesSecret(t *testing.T) {
	k := keys{idA: auth.NewSecret(), idB: auth.NewSecret()}
	acc, _, err := handshake(t, k, idB, k[idA])
	wantRefused(t, acc, err)
}

func TestUnknownInstance(t *testing.T) {
	acc, _, err := handshake(t, keys{idA: auth.NewSecret()}, idB, auth.NewSecret())
	wantRefused(t, acc, err)
}

// fakeInstance is a hand-driven instance side: it reads the challenge and
// sends whatever AUTH_REQUEST the test builds from it, then returns the
// agent's answer.
func fakeInstance(t *testing.T, conn transport.Conn, build func(nonce []byte) *spearpb.AuthRequest) wire.Frame {
	t.Helper()
	f, err := conn.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	var ch spearpb.AuthChallenge
	if f.Type != wire.TypeAuthChallenge || proto.Unmarshal(f.Payload, &ch) != nil {
		t.Fatalf("first frame is %v, want an AUTH_CHALLENGE", f.Type)
	}
	if len(ch.Nonce) != auth.NonceSize || len(ch.Versions) != 1 || ch.Versions[0] != wire.Version {
		t.Fatalf("challenge %v: want a %d-byte nonce and versions [%d]", &ch, auth.NonceSize, wire.Version)
	}
	b, _ := proto.Marshal(build(ch.Nonce))
	if err := conn.WriteFrame(&wire.Frame{Type: wire.TypeAuthRequest, Payload: b}); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// TestRefusalsLookAlike: an unknown id, a wrong secret and a malformed id
// get byte-identical answers, so a peer learns nothing about which ids
// exist.
func TestRefusalsLookAlike(t *testing.T) {
	secret := auth.NewSecret()
	k := keys{idA: secret}
	cases := map[string]func(nonce []byte) *spearpb.AuthRequest{
		"unknown id": func(nonce []byte) *spearpb.AuthRequest {
			cn := bytes.Repeat([]byte{1}, auth.NonceSize)
			return &spearpb.AuthRequest{InstanceId: idB.String(), ClientNonce: cn, Proof: docProof(secret, "spear-auth-v1 instance", nonce, cn, idB.String())}
		},
		"wrong secret": func(nonce []byte) *spearpb.AuthRequest {
			cn := bytes.Repeat([]byte{1}, auth.NonceSize)
			return &spearpb.AuthRequest{InstanceId: idA.String(), ClientNonce: cn, Proof: docProof(auth.NewSecret(), "spear-auth-v1 instance", nonce, cn, idA.String())}
		},
		"malformed id": func(nonce []byte) *spearpb.AuthRequest {
			cn := bytes.Repeat([]byte{1}, auth.NonceSize)
			return &spearpb.AuthRequest{InstanceId: "not an id", ClientNonce: cn, Proof: make([]byte, 32)}
		},
		"short client nonce": func(nonce []byte) *spearpb.AuthRequest {
			cn := []byte{1, 2, 3}
			return &spearpb.AuthRequest{InstanceId: idA.String(), ClientNonce: cn, Proof: docProof(secret, "spear-auth-v1 instance", nonce, cn, idA.String())}
		},
	}
	var first []byte
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			a, b := pipe(t)
			res := startAccept(testCtx(t), a, k)
			reply := fakeInstance(t, b, build)
			if acc := <-res; !errors.Is(acc.err, spear.ErrAuthFailed) {
				t.Fatalf("agent: %v, want ErrAuthFailed", acc.err)
			}
			var e spearpb.Error
			if reply.Type != wire.TypeError || reply.ID != 0 || proto.Unmarshal(reply.Payload, &e) != nil ||
				spear.Code(e.Code) != spear.CodeAuthFailed {
				t.Fatalf("agent answered %v %x, want ERROR AUTH_FAILED with id 0", reply.Type, reply.Payload)
			}
			if first == nil {
				first = reply.Payload
			} else if !bytes.Equal(first, reply.Payload) {
				t.Errorf("refusal payload %x differs from another case's %x", reply.Payload, first)
			}
			if _, err := b.ReadFrame(); err == nil {
				t.Error("the connection stayed open after the refusal")
			}
		})
	}
}

// TestReplay records a successful AUTH_REQUEST and plays it back on a new
// connection: the fresh nonce makes it worthless.
func TestReplay(t *testing.T) {
	secret := auth.NewSecret()
	k := keys{idA: secret}
	var recorded *spearpb.AuthRequest
	{
		a, b := pipe(t)
		res := startAccept(testCtx(t), a, k)
		reply := fakeInstance(t, b, func(nonce []byte) *spearpb.AuthRequest {
			cn := bytes.Repeat([]byte{7}, auth.NonceSize)
			recorded = &spearpb.AuthRequest{InstanceId: idA.String(), ClientNonce: cn, Proof: docProof(secret, "spear-auth-v1 instance", nonce, cn, idA.String())}
			return recorded
		})
		if acc := <-res; acc.err != nil || reply.Type != wire.TypeAuthResponse {
			t.Fatalf("the original handshake failed: %v, %v", acc.err, reply.Type)
		}
	}
	a, b := pipe(t)
	res := startAccept(testCtx(t), a, k)
	reply := fakeInstance(t, b, func([]byte) *spearpb.AuthRequest { return recorded })
	if acc := <-res; !errors.Is(acc.err, spear.ErrAuthFailed) {
		t.Fatalf("replayed AUTH_REQUEST: agent says %v %v, want ErrAuthFailed", acc.id, acc.err)
	}
	if reply.Type != wire.TypeError {
		t.Fatalf("replayed AUTH_REQUEST answered with %v", reply.Type)
	}
}

// fakeAgent is a hand-driven agent side: it sends a challenge with nonce,
// reads the AUTH_REQUEST and answers with what respond returns.
func fakeAgent(conn transport.Conn, nonce []byte, respond func(req *spearpb.AuthRequest) *wire.Frame) <-chan *spearpb.AuthRequest {
	got := make(chan *spearpb.AuthRequest, 1)
	go func() {
		defer close(got)
		ch, _ := proto.Marshal(&spearpb.AuthChallenge{Nonce: nonce, Versions: []uint32{wire.Version}})
		if conn.WriteFrame(&wire.Frame{Type: wire.TypeAuthChallenge, Payload: ch}) != nil {
			return
		}
		f, err := conn.ReadFrame()
		if err != nil {
			return
		}
		var req spearpb.AuthRequest
		if proto.Unmarshal(f.Payload, &req) != nil {
			return
		}
		got <- &req
		_ = conn.WriteFrame(respond(&req))
	}()
	return got
}

func authResponse(serverProof []byte) *wire.Frame {
	b, _ := proto.Marshal(&spearpb.AuthResponse{SessionId: "x", ServerProof: serverProof})
	return &wire.Frame{Type: wire.TypeAuthResponse, Payload: b}
}

// TestImpostorAgent: an agent that does not know the secret cannot pass
// the instance's check of its proof, whatever it sends back.
func TestImpostorAgent(t *testing.T) {
	secret := auth.NewSecret()
	nonce := bytes.Repeat([]byte{9}, auth.NonceSize)
	cases := map[string]func(req *spearpb.AuthRequest) []byte{
		"random proof": func(*spearpb.AuthRequest) []byte { return auth.NewSecret() },
		"no proof":     func(*spearpb.AuthRequest) []byte { return nil },
		// Reflection: the instance's own proof, sent back.
		"reflected proof": func(req *spearpb.AuthRequest) []byte { return req.Proof },
		"other secret": func(req *spearpb.AuthRequest) []byte {
			return docProof(auth.NewSecret(), "spear-auth-v1 agent", nonce, req.ClientNonce, req.InstanceId)
		},
	}
	for name, proof := range cases {
		t.Run(name, func(t *testing.T) {
			a, b := pipe(t)
			reqs := fakeAgent(a, nonce, func(req *spearpb.AuthRequest) *wire.Frame { return authResponse(proof(req)) })
			resp, err := auth.Connect(testCtx(t), b, idA, secret)
			if !errors.Is(err, spear.ErrAuthFailed) || resp != nil {
				t.Fatalf("got %v %v, want ErrAuthFailed", resp, err)
			}
			b.Close()
			<-reqs
		})
	}
}

// TestDocumentedProofs drives each side with a peer that computes proofs
// from the documented byte layout, not with auth.Proof: the real code and
// the spec must agree.
func TestDocumentedProofs(t *testing.T) {
	secret := auth.NewSecret()
	t.Run("instance side", func(t *testing.T) {
		a, b := pipe(t)
		nonce := bytes.Repeat([]byte{3}, auth.NonceSize)
		reqs := fakeAgent(a, nonce, func(req *spearpb.AuthRequest) *wire.Frame {
			return authResponse(docProof(secret, "spear-auth-v1 agent", nonce, req.ClientNonce, req.InstanceId))
		})
		if _, err := auth.Connect(testCtx(t), b, idB, secret); err != nil {
			t.Fatalf("instance refused a correct server proof: %v", err)
		}
		req := <-reqs
		if req.InstanceId != "tenant:process:fn-b" || len(req.ClientNonce) != auth.NonceSize {
			t.Errorf("AUTH_REQUEST %v: want the full id and a %d-byte client nonce", req, auth.NonceSize)
		}
		if want := docProof(secret, "spear-auth-v1 instance", nonce, req.ClientNonce, req.InstanceId); !hmac.Equal(req.Proof, want) {
			t.Errorf("instance proof %x, documented layout gives %x", req.Proof, want)
		}
	})
	t.Run("agent side", func(t *testing.T) {
		a, b := pipe(t)
		res := startAccept(testCtx(t), a, keys{idB: secret})
		cn := bytes.Repeat([]byte{4}, auth.NonceSize)
		var nonce []byte
		reply := fakeInstance(t, b, func(n []byte) *spearpb.AuthRequest {
			nonce = n
			return &spearpb.AuthRequest{InstanceId: idB.String(), ClientNonce: cn, Proof: docProof(secret, "spear-auth-v1 instance", n, cn, idB.String())}
		})
		if acc := <-res; acc.err != nil || acc.id != idB {
			t.Fatalf("agent: %v %v, want %s", acc.id, acc.err, idB)
		}
		var resp spearpb.AuthResponse
		if reply.Type != wire.TypeAuthResponse || proto.Unmarshal(reply.Payload, &resp) != nil {
			t.Fatalf("agent answered %v", reply.Type)
		}
		if want := docProof(secret, "spear-auth-v1 agent", nonce, cn, idB.String()); !hmac.Equal(resp.ServerProof, want) {
			t.Errorf("server proof %x, documented layout gives %x", resp.ServerProof, want)
		}
	})
}

// TestSilentPeer: a peer that never speaks is dropped when ctx ends, with
// an error matching spear.ErrTimeout, on either side.
func TestSilentPeer(t *testing.T) {
	t.Run("instance silent", func(t *testing.T) {
		a, b := pipe(t)
		go func() { _, _ = b.ReadFrame() }() // reads the challenge, then nothing
		ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
		defer cancel()
		id, err := auth.Accept(ctx, a, keys{idA: auth.NewSecret()}.lookup, testOffer)
		if !errors.Is(err, spear.ErrTimeout) || !id.ID.IsZero() {
			t.Fatalf("got %v %v, want ErrTimeout", id, err)
		}
	})
	t.Run("agent silent", func(t *testing.T) {
		_, b := pipe(t)
		ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
		defer cancel()
		if _, err := auth.Connect(ctx, b, idA, auth.NewSecret()); !errors.Is(err, spear.ErrTimeout) {
			t.Fatalf("got %v, want ErrTimeout", err)
		}
	})
	t.Run("agent silent after request", func(t *testing.T) {
		a, b := pipe(t)
		nonce := bytes.Repeat([]byte{5}, auth.NonceSize)
		go func() {
			ch, _ := proto.Marshal(&spearpb.AuthChallenge{Nonce: nonce})
			_ = a.WriteFrame(&wire.Frame{Type: wire.TypeAuthChallenge, Payload: ch})
			_, _ = a.ReadFrame() // the request, never answered
		}()
		ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
		defer cancel()
		if _, err := auth.Connect(ctx, b, idA, auth.NewSecret()); !errors.Is(err, spear.ErrTimeout) {
			t.Fatalf("got %v, want ErrTimeout", err)
		}
		a.Close()
	})
}

// rawPeer connects a byte-level peer to a StreamConn agent side, so tests
// can send bytes no well-behaved encoder would.
func rawPeer(t *testing.T) (agent transport.Conn, peer net.Conn, peerFrames *wire.Reader) {
	a, b := net.Pipe()
	agent = transport.NewStreamConn(a, transport.Info{Transport: "pipe"}, 1024, testTimeout)
	t.Cleanup(func() { agent.Close(); b.Close() })
	return agent, b, wire.NewReader(b, 1024)
}

// TestBadFramesBeforeAuth: what the agent tells a peer whose first frame
// breaks the protocol, and the error Accept returns.
func TestBadFramesBeforeAuth(t *testing.T) {
	hdr := func(version, typ byte, length uint32) []byte {
		return []byte{byte(length >> 24), byte(length >> 16), byte(length >> 8), byte(length), version, typ, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	}
	tests := []struct {
		name string
		send []byte
		code spear.Code
		want func(error) bool
	}{
		{"version 2", hdr(2, byte(wire.TypeAuthRequest), 0), spear.CodeUnsupportedVersion,
			func(err error) bool { var ve *wire.VersionError; return errors.As(err, &ve) && ve.Got == 2 }},
		{"too large", hdr(1, byte(wire.TypeAuthRequest), 0xFFFFFFF0), spear.CodeTooLarge,
			func(err error) bool { var tl *wire.FrameTooLargeError; return errors.As(err, &tl) }},
		{"unknown type", hdr(1, 77, 0), spear.CodeInvalidMessage,
			func(err error) bool { return errors.Is(err, spear.ErrInvalidMessage) }},
		{"wrong type", wire.AppendFrame(nil, &wire.Frame{Type: wire.TypeExecuteRequest, ID: 1}), spear.CodeInvalidMessage,
			func(err error) bool { return errors.Is(err, spear.ErrInvalidMessage) }},
		{"undecodable payload", wire.AppendFrame(nil, &wire.Frame{Type: wire.TypeAuthRequest, Payload: []byte{0xff, 0xff}}), spear.CodeInvalidMessage,
			func(err error) bool { return errors.Is(err, spear.ErrInvalidMessage) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent, peer, frames := rawPeer(t)
			res := startAccept(testCtx(t), agent, keys{idA: auth.NewSecret()})
			if f, err := frames.ReadFrame(); err != nil || f.Type != wire.TypeAuthChallenge {
				t.Fatalf("first frame: %v %v", f.Type, err)
			}
			go func() { _, _ = peer.Write(tt.send) }() // may block on bytes the agent never reads
			f, err := frames.ReadFrame()
			if err != nil {
				t.Fatalf("no answer to the bad frame: %v", err)
			}
			var e spearpb.Error
			if f.Type != wire.TypeError || proto.Unmarshal(f.Payload, &e) != nil || spear.Code(e.Code) != tt.code {
				t.Fatalf("answer %v %v, want ERROR %v", f.Type, &e, tt.code)
			}
			acc := <-res
			if !tt.want(acc.err) || !errors.Is(acc.err, spear.ErrInvalidMessage) {
				t.Fatalf("Accept returned %v", acc.err)
			}
			if _, err := frames.ReadFrame(); err == nil {
				t.Fatal("connection still open after the refusal")
			}
		})
	}
}

// TestInstanceRejectsBadChallenge: the instance side refuses anything but
// a proper AUTH_CHALLENGE, and reports an agent's ERROR as a RemoteError.
func TestInstanceRejectsBadChallenge(t *testing.T) {
	errPayload, _ := proto.Marshal(&spearpb.Error{Code: uint32(spear.CodeResourceExhausted), Message: "too many connections"})
	shortNonce, _ := proto.Marshal(&spearpb.AuthChallenge{Nonce: []byte{1, 2}})
	tests := []struct {
		name  string
		frame *wire.Frame
		want  func(error) bool
	}{
		{"error frame", &wire.Frame{Type: wire.TypeError, Payload: errPayload}, func(err error) bool {
			var re *spear.RemoteError
			return errors.As(err, &re) && re.Code == spear.CodeResourceExhausted
		}},
		{"short nonce", &wire.Frame{Type: wire.TypeAuthChallenge, Payload: shortNonce}, func(err error) bool {
			return errors.Is(err, spear.ErrInvalidMessage)
		}},
		{"wrong type", &wire.Frame{Type: wire.TypeHeartbeat}, func(err error) bool {
			return errors.Is(err, spear.ErrInvalidMessage)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := pipe(t)
			if err := a.WriteFrame(tt.frame); err != nil {
				t.Fatal(err)
			}
			if _, err := auth.Connect(testCtx(t), b, idA, auth.NewSecret()); !tt.want(err) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestSessionIDs(t *testing.T) {
	a, b := auth.NewSessionID(), auth.NewSessionID()
	if len(a) != 16 || a == b {
		t.Fatalf("session ids %q %q: want 16 hex digits, distinct", a, b)
	}
}

// An agent that refuses an authenticated instance after all (a connection
// cap) says so in an ERROR frame with the code it chose, instead of
// accepting it.
func TestOfferRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	secret := auth.NewSecret()
	a, b := memory.Pipe()
	defer a.Close()
	defer b.Close()
	capped := errors.New("instance already has 4 connections")
	done := make(chan error, 1)
	go func() {
		_, err := auth.Accept(ctx, a, keys{idA: secret}.lookup, func(spear.InstanceID, auth.Slot) (auth.Offer, error) {
			return auth.Offer{}, errors.Join(capped, &spear.RemoteError{Code: spear.CodeResourceExhausted, Message: "too many connections"})
		})
		done <- err
	}()
	_, err := auth.Connect(ctx, b, idA, secret)
	var re *spear.RemoteError
	if !errors.As(err, &re) || re.Code != spear.CodeResourceExhausted || re.Message != "too many connections" {
		t.Fatalf("instance got %v, want RESOURCE_EXHAUSTED", err)
	}
	if err := <-done; !errors.Is(err, capped) {
		t.Fatalf("Accept returned %v, want the offer's error", err)
	}
}

func TestSecretFromEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte("c0ffee\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A file far larger than any secret is refused, not read whole (it
	// could be /dev/zero).
	huge := filepath.Join(t.TempDir(), "huge")
	if err := os.WriteFile(huge, bytes.Repeat([]byte("ab"), 8<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	const fromFD = "@fd" // the secret field's marker for "a pipe holding 5ec8e7"
	for _, tt := range []struct {
		name              string
		fd, secret, sfile string
		want              string // hex; "" means an error matching spear.ErrConfig
	}{
		{"variable", "", "abcd", "", "abcd"},
		{"file wins over the variable", "", "abcd", file, "c0ffee"},
		{"file", "", "", file, "c0ffee"},
		{"descriptor wins over both", fromFD, "abcd", file, "5ec8e7"},
		{"descriptor", fromFD, "", "", "5ec8e7"},
		{"descriptor not a number", "three", "abcd", "", ""},
		{"descriptor not open", "987654", "abcd", "", ""},
		{"missing file", "", "", file + ".missing", ""},
		{"file too large", "", "", huge, ""},
		{"none", "", "", "", ""},
		{"not hex", "", "xyz", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pipe := -1
			if tt.fd == fromFD {
				pipe = secretPipe(t, " 5ec8e7\n")
				tt.fd = strconv.Itoa(pipe)
			}
			t.Setenv(spear.EnvSecretFD, tt.fd)
			t.Setenv(spear.EnvSecret, tt.secret)
			t.Setenv(spear.EnvSecretFile, tt.sfile)
			got, err := auth.SecretFromEnv()
			if pipe >= 0 {
				// The reader closed the descriptor: closing it again fails.
				if err := syscall.Close(pipe); !errors.Is(err, syscall.EBADF) {
					t.Errorf("the secret's descriptor is still open after reading (close: %v)", err)
				}
			}
			for _, k := range []string{spear.EnvSecretFD, spear.EnvSecret} {
				if v := os.Getenv(k); v != "" {
					t.Errorf("%s=%q is still in the environment", k, v)
				}
			}
			if tt.want == "" {
				if !errors.Is(err, spear.ErrConfig) {
					t.Fatalf("got %v, %v; want an error matching spear.ErrConfig", got, err)
				}
				if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
					t.Errorf("the error %q quotes the value", err)
				}
				return
			}
			if err != nil || hex.EncodeToString(got) != tt.want {
				t.Fatalf("got %x, %v; want %s", []byte(got), err, tt.want)
			}
		})
	}
}

// secretPipe returns the descriptor of the read end of a pipe holding
// content, its write end closed; no *os.File owns it.
func secretPipe(t *testing.T, content string) int {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString(content); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// No *os.File may close the number again once the reader has:
	// another descriptor may have it by then.
	fd, err := syscall.Dup(int(r.Fd()))
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	return fd
}
