// Package auth is the connection handshake of docs/protocol.md, a
// challenge-response over HMAC-SHA256 that never sends the secret:
//
//	agent    -> instance  AUTH_CHALLENGE {nonce, versions}
//	instance -> agent     AUTH_REQUEST   {instance_id, client_nonce, proof}
//	agent    -> instance  AUTH_RESPONSE  {session_id, features, server_proof, ...}
//	                      or ERROR {AUTH_FAILED}, then close
//
// proof = HMAC(secret, "spear-auth-v1 instance" 0 nonce client_nonce id) and
// server_proof the same with "spear-auth-v1 agent", so each side proves it
// holds the secret, and a fresh nonce per connection defeats replay.
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/wire"
)

// Conn is what the handshake needs of a connection: a transport.Conn, or
// the wasm guest library's pair of byte streams. (Declared here rather than
// taken from package transport, which would link package net into every
// wasm guest.)
type Conn interface {
	ReadFrame() (wire.Frame, error)
	WriteFrame(f *wire.Frame) error
	Close() error
}

// NonceSize is the size of both nonces.
const NonceSize = 32

// SecretSize is the size of the secrets NewSecret makes.
const SecretSize = 32

const (
	roleInstance = "spear-auth-v1 instance"
	roleAgent    = "spear-auth-v1 agent"
)

// NewSecret returns a fresh random per-instance secret.
func NewSecret() spear.Secret {
	b := make([]byte, SecretSize)
	_, _ = rand.Read(b) // never fails on supported platforms
	return b
}

// Proof computes HMAC-SHA256(secret, role 0x00 nonce clientNonce id).
func Proof(secret []byte, role string, nonce, clientNonce []byte, id string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(role))
	m.Write([]byte{0})
	m.Write(nonce)
	m.Write(clientNonce)
	m.Write([]byte(id))
	return m.Sum(nil)
}

// Credentials are what the agent knows about an instance that may connect.
type Credentials struct {
	Secret spear.Secret
}

// Lookup finds the credentials of the instance a connection claims to be.
// It reports false for an instance the agent does not expect.
type Lookup func(id spear.InstanceID) (Credentials, bool)

// OfferFunc is called once the instance has proved it is id, before it is
// told it is accepted; slot is what it said of its connections. It returns
// what to tell the instance, or an error to refuse it after all; a
// *spear.RemoteError in that error chooses the code the instance sees
// (UNAVAILABLE otherwise).
type OfferFunc func(id spear.InstanceID, slot Slot) (Offer, error)

// Slot is what an instance says of a connection in its AUTH_REQUEST: its
// index among the instance's connections (0 for the first), and how many
// the instance can hold (0 from instances that predate multiple
// connections, which hold one).
type Slot struct {
	Connection     uint32
	MaxConnections uint32
}

// Offer is what the agent tells an accepted instance.
type Offer struct {
	SessionID         string
	Features          []string
	HeartbeatInterval uint32 // ms
	MaxPayload        uint32
	Connections       uint32 // how many connections to hold; 0 means one
}

// failedMessage is the one message every refusal carries, so a peer cannot
// tell an unknown instance from a wrong secret.
const failedMessage = "authentication failed"

// Accepted is what the handshake learned of an authenticated instance.
type Accepted struct {
	ID spear.InstanceID
	// Features are the optional protocol features the instance announced
	// in its AUTH_REQUEST (wire.FeatureSplit).
	Features []string
}

// Has reports whether the instance announced feature.
func (a Accepted) Has(feature string) bool { return slices.Contains(a.Features, feature) }

// Accept runs the agent's side of the handshake on conn. It returns the
// authenticated instance. ctx bounds the whole handshake: a peer that is
// silent past it has conn closed under it. Errors match spear.ErrAuthFailed,
// spear.ErrTimeout or spear.ErrInvalidMessage; on error the peer was told
// why (where it can be told) and the caller must close conn.
func Accept(ctx context.Context, conn Conn, lookup Lookup, offer OfferFunc) (Accepted, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	a, err := accept(conn, lookup, offer)
	if err != nil && ctx.Err() != nil {
		return Accepted{}, fmt.Errorf("%w: handshake not completed in time: %w", spear.ErrTimeout, ctx.Err())
	}
	return a, err
}

func accept(conn Conn, lookup Lookup, offer OfferFunc) (Accepted, error) {
	nonce := make([]byte, NonceSize)
	_, _ = rand.Read(nonce)
	ch := codec.AppendAuthChallenge(nil, &codec.AuthChallenge{Nonce: nonce, Versions: []uint32{wire.Version}})
	if err := conn.WriteFrame(&wire.Frame{Type: wire.TypeAuthChallenge, Payload: ch}); err != nil {
		return Accepted{}, fmt.Errorf("%w: send challenge: %w", spear.ErrConnectionFailed, err)
	}
	f, err := conn.ReadFrame()
	if err != nil {
		refuse(conn, err)
		return Accepted{}, fmt.Errorf("read auth request: %w", err)
	}
	if f.Type != wire.TypeAuthRequest {
		err := fmt.Errorf("%w: expected AUTH_REQUEST, got %s", spear.ErrInvalidMessage, f.Type)
		refuse(conn, err)
		return Accepted{}, err
	}
	req, err := codec.DecodeAuthRequest(f.Payload)
	if err != nil {
		refuse(conn, err)
		return Accepted{}, err
	}
	id, idErr := spear.ParseInstanceID(req.InstanceID)
	creds, known := Credentials{}, false
	if idErr == nil {
		creds, known = lookup(id)
	}
	secret := creds.Secret
	if !known {
		// Do the same work for an unknown id, so timing does not tell
		// which ids exist.
		secret = make([]byte, SecretSize)
	}
	want := Proof(secret, roleInstance, nonce, req.ClientNonce, req.InstanceID)
	ok := hmac.Equal(want, req.Proof) && known && len(req.ClientNonce) == NonceSize
	if !ok {
		_ = conn.WriteFrame(codec.ErrorFrame(0, spear.CodeAuthFailed, failedMessage))
		if idErr != nil {
			return Accepted{}, fmt.Errorf("%w: %w", spear.ErrAuthFailed, idErr)
		}
		return Accepted{}, fmt.Errorf("%w: bad proof or unknown instance %q", spear.ErrAuthFailed, req.InstanceID)
	}
	o, err := offer(id, Slot{Connection: req.Connection, MaxConnections: req.MaxConnections})
	if err != nil {
		// The instance is who it says, but the agent will not take it
		// now (a connection cap): say why, instead of accepting.
		var re *spear.RemoteError
		if !errors.As(err, &re) {
			re = &spear.RemoteError{Code: spear.CodeUnavailable, Message: err.Error()}
		}
		_ = conn.WriteFrame(codec.ErrorFrame(0, re.Code, re.Message))
		return Accepted{}, err
	}
	resp := codec.AppendAuthResponse(nil, &codec.AuthResponse{
		SessionID:           o.SessionID,
		Features:            o.Features,
		ServerProof:         Proof(secret, roleAgent, nonce, req.ClientNonce, req.InstanceID),
		HeartbeatIntervalMs: o.HeartbeatInterval,
		MaxPayload:          o.MaxPayload,
		Connections:         o.Connections,
	})
	if err := conn.WriteFrame(&wire.Frame{Type: wire.TypeAuthResponse, Payload: resp}); err != nil {
		return Accepted{}, fmt.Errorf("%w: send auth response: %w", spear.ErrConnectionFailed, err)
	}
	return Accepted{ID: id, Features: slices.Clone(req.Features)}, nil
}

// refuse tells the peer why its handshake failed, where the error is one
// the peer caused and can be told about.
func refuse(conn Conn, err error) {
	if f, ok := codec.Refusal(err); ok {
		_ = conn.WriteFrame(f)
	}
}

// Connect runs the instance's side of the handshake, announcing features
// (optional protocol features the instance supports, such as
// wire.FeatureSplit). It checks the agent's proof too, so an instance
// never talks to an impostor. ctx bounds the handshake as in Accept.
func Connect(ctx context.Context, conn Conn, id spear.InstanceID, secret spear.Secret, features ...string) (*codec.AuthResponse, error) {
	return ConnectSlot(ctx, conn, id, secret, Slot{}, features...)
}

// ConnectSlot is Connect for connection slot.Connection of an instance
// that can hold slot.MaxConnections connections.
func ConnectSlot(ctx context.Context, conn Conn, id spear.InstanceID, secret spear.Secret, slot Slot, features ...string) (*codec.AuthResponse, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, err := connect(conn, id, secret, slot, features)
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%w: handshake not completed in time: %w", spear.ErrTimeout, ctx.Err())
	}
	return resp, err
}

func connect(conn Conn, id spear.InstanceID, secret spear.Secret, slot Slot, features []string) (*codec.AuthResponse, error) {
	f, err := conn.ReadFrame()
	if err != nil {
		return nil, fmt.Errorf("%w: read challenge: %w", spear.ErrConnectionFailed, err)
	}
	if err := frameErr(f); err != nil {
		return nil, err
	}
	a, err := AnswerChallenge(f, id, secret, slot, features...)
	if err != nil {
		return nil, err
	}
	if err := conn.WriteFrame(&a.Request); err != nil {
		return nil, fmt.Errorf("%w: send auth request: %w", spear.ErrConnectionFailed, err)
	}
	f, err = conn.ReadFrame()
	if err != nil {
		return nil, fmt.Errorf("%w: read auth response: %w", spear.ErrConnectionFailed, err)
	}
	if err := frameErr(f); err != nil {
		return nil, err
	}
	resp, err := codec.DecodeAuthResponse(f.Payload)
	if f.Type != wire.TypeAuthResponse || err != nil {
		return nil, fmt.Errorf("%w: expected an AUTH_RESPONSE, got %s", spear.ErrInvalidMessage, f.Type)
	}
	want := Proof(secret, roleAgent, a.Nonce, a.ClientNonce, id.String())
	if !hmac.Equal(want, resp.ServerProof) {
		return nil, fmt.Errorf("%w: the agent could not prove it knows the secret", spear.ErrAuthFailed)
	}
	return &resp, nil
}

// Answer is an instance's answer to an AUTH_CHALLENGE.
type Answer struct {
	// Request is the AUTH_REQUEST frame to send.
	Request wire.Frame
	// Nonce is the agent's nonce, from the challenge, and ClientNonce the
	// instance's fresh one: with the secret they give the proof the
	// agent's AUTH_RESPONSE must carry.
	Nonce, ClientNonce []byte
}

// AnswerChallenge builds the AUTH_REQUEST with which instance id, holding
// secret, answers f, an AUTH_CHALLENGE frame: a fresh client nonce and
// the proof. It is Connect's first half, and all a wasm guest's host
// import needs (runtime/wasm). Errors match spear.ErrInvalidMessage.
func AnswerChallenge(f wire.Frame, id spear.InstanceID, secret spear.Secret, slot Slot, features ...string) (Answer, error) {
	ch, err := codec.DecodeAuthChallenge(f.Payload)
	if f.Type != wire.TypeAuthChallenge || err != nil || len(ch.Nonce) != NonceSize {
		return Answer{}, fmt.Errorf("%w: expected an AUTH_CHALLENGE, got %s", spear.ErrInvalidMessage, f.Type)
	}
	clientNonce := make([]byte, NonceSize)
	_, _ = rand.Read(clientNonce)
	full := id.String()
	req := codec.AppendAuthRequest(nil, &codec.AuthRequest{
		InstanceID:     full,
		ClientNonce:    clientNonce,
		Proof:          Proof(secret, roleInstance, ch.Nonce, clientNonce, full),
		Connection:     slot.Connection,
		MaxConnections: slot.MaxConnections,
		Features:       features,
	})
	return Answer{
		Request:     wire.Frame{Type: wire.TypeAuthRequest, Payload: req},
		Nonce:       ch.Nonce,
		ClientNonce: clientNonce,
	}, nil
}

// frameErr turns an ERROR frame into a *spear.RemoteError wrapped with the
// category its code implies.
func frameErr(f wire.Frame) error {
	err := codec.FrameError(f)
	if err != nil && spear.CodeOf(err) == spear.CodeAuthFailed {
		return fmt.Errorf("%w: %w", spear.ErrAuthFailed, err)
	}
	return err
}

// SecretFromEnv reads an instance's secret where the agent handed it over,
// in order of preference: the inherited file descriptor SPEAR_SECRET_FD
// names (read to EOF, then closed), the file SPEAR_SECRET_FILE names, or
// SPEAR_SECRET. Each holds it hex-encoded; surrounding whitespace is
// ignored. It then removes SPEAR_SECRET_FD and SPEAR_SECRET from the
// environment, so that processes the instance starts do not inherit them.
//
// It is the instance side's one reader of the hand-off (the SDK's and the
// wasm guest library's), as channel.Credentials is the agent side's one
// writer: a new way of handing the secret over changes these two. Errors
// match spear.ErrConfig and never quote what was read.
func SecretFromEnv() (spear.Secret, error) {
	var (
		raw    []byte
		source string
		err    error
	)
	switch fd, file, env := os.Getenv(spear.EnvSecretFD), os.Getenv(spear.EnvSecretFile), os.Getenv(spear.EnvSecret); {
	case fd != "":
		source = spear.EnvSecretFD
		raw, err = readSecretFD(fd)
	case file != "":
		source = spear.EnvSecretFile
		raw, err = readSecretFile(file)
	case env != "":
		source, raw = spear.EnvSecret, []byte(env)
	default:
		return nil, fmt.Errorf("%w: no secret: set %s, %s or %s", spear.ErrConfig, spear.EnvSecretFD, spear.EnvSecretFile, spear.EnvSecret)
	}
	_ = os.Unsetenv(spear.EnvSecretFD)
	_ = os.Unsetenv(spear.EnvSecret)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", spear.ErrConfig, source, err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(secret) == 0 {
		return nil, fmt.Errorf("%w: %s does not hold a hex-encoded secret", spear.ErrConfig, source)
	}
	return secret, nil
}

// maxSecretHandoff bounds what is read from a secret descriptor or file:
// far more than any hex secret with whitespace around it.
const maxSecretHandoff = 4096

// readSecretFD reads the descriptor named by value to EOF and closes it.
func readSecretFD(value string) ([]byte, error) {
	fd, err := strconv.Atoi(value)
	if err != nil || fd < 0 {
		return nil, fmt.Errorf("%q is not a file descriptor number", value)
	}
	return readHandoff(os.NewFile(uintptr(fd), spear.EnvSecretFD), fmt.Sprintf("descriptor %d", fd))
}

// readSecretFile reads the file at path.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return readHandoff(f, path)
}

// readHandoff reads f, named what in errors, to EOF, at most
// maxSecretHandoff bytes, and closes it.
func readHandoff(f *os.File, what string) ([]byte, error) {
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretHandoff+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(b) > maxSecretHandoff {
		return nil, fmt.Errorf("%s holds more than %d bytes", what, maxSecretHandoff)
	}
	return b, nil
}

// NewSessionID returns a random session id for logs.
func NewSessionID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
