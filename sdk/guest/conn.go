package guest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/wire"
)

// conn carries frames over a pair of byte streams: in from the agent
// (stdin) and out to the agent (stdout).
type conn struct {
	r *wire.Reader // only the serving loop reads

	mu  sync.Mutex // guards the fields below, so handler goroutines may write
	w   io.Writer
	buf []byte

	peerMax uint32 // the agent's payload limit, once the handshake told it
}

func newConn(in io.Reader, out io.Writer) *conn {
	return &conn{r: wire.NewReader(in, 0), w: out}
}

func (c *conn) read() (wire.Frame, error) { return c.r.ReadFrame() }

// write encodes f and writes it with one Write, so frames never interleave.
// A payload over the agent's limit is not sent: the error is a
// *wire.FrameTooLargeError, and the connection goes on.
func (c *conn) write(f *wire.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peerMax > 0 && uint64(len(f.Payload)) > uint64(c.peerMax) {
		return &wire.FrameTooLargeError{Length: uint32(min(len(f.Payload), math.MaxUint32)), Max: c.peerMax}
	}
	c.buf = wire.AppendFrame(c.buf[:0], f)
	if _, err := c.w.Write(c.buf); err != nil {
		return fmt.Errorf("%w: %s: %w", spear.ErrSendFailed, f.Type, err)
	}
	if cap(c.buf) > 64<<10 {
		c.buf = nil // do not pin one large payload's buffer for ever
	}
	return nil
}

// The handshake of docs/protocol.md, instance side; internal/auth is the
// reference (its tests and ours check the proofs agree).
const (
	nonceSize    = 32
	roleInstance = "spear-auth-v1 instance"
	roleAgent    = "spear-auth-v1 agent"
)

// proof is HMAC-SHA256(secret, role 0x00 nonce clientNonce id).
func proof(secret []byte, role string, nonce, clientNonce []byte, id string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(role))
	m.Write([]byte{0})
	m.Write(nonce)
	m.Write(clientNonce)
	m.Write([]byte(id))
	return m.Sum(nil)
}

// handshake answers the agent's challenge with a proof of the secret and
// checks the agent's proof in return. Errors match spear.ErrAuthFailed,
// spear.ErrInvalidMessage or spear.ErrConnectionFailed.
func (c *conn) handshake(id spear.InstanceID, secret spear.Secret) (authResponse, error) {
	f, err := c.read()
	if err != nil {
		return authResponse{}, fmt.Errorf("%w: read challenge: %w", spear.ErrConnectionFailed, err)
	}
	if err := refusal(f); err != nil {
		return authResponse{}, err
	}
	nonce, err := authChallengeNonce(f.Payload)
	if f.Type != wire.TypeAuthChallenge || err != nil || len(nonce) != nonceSize {
		return authResponse{}, fmt.Errorf("%w: expected an AUTH_CHALLENGE, got %s", spear.ErrInvalidMessage, f.Type)
	}
	clientNonce := make([]byte, nonceSize)
	if _, err := rand.Read(clientNonce); err != nil {
		return authResponse{}, fmt.Errorf("%w: no randomness for the client nonce: %w", spear.ErrConnectionFailed, err)
	}
	full := id.String()
	req := encodeAuthRequest(full, clientNonce, proof(secret, roleInstance, nonce, clientNonce, full))
	if err := c.write(&wire.Frame{Type: wire.TypeAuthRequest, Payload: req}); err != nil {
		return authResponse{}, fmt.Errorf("%w: %w", spear.ErrConnectionFailed, err)
	}
	if f, err = c.read(); err != nil {
		return authResponse{}, fmt.Errorf("%w: read auth response: %w", spear.ErrConnectionFailed, err)
	}
	if err := refusal(f); err != nil {
		return authResponse{}, err
	}
	resp, err := decodeAuthResponse(f.Payload)
	if f.Type != wire.TypeAuthResponse || err != nil {
		return authResponse{}, fmt.Errorf("%w: expected an AUTH_RESPONSE, got %s", spear.ErrInvalidMessage, f.Type)
	}
	if !hmac.Equal(proof(secret, roleAgent, nonce, clientNonce, full), resp.serverProof) {
		return authResponse{}, fmt.Errorf("%w: the agent could not prove it knows the secret", spear.ErrAuthFailed)
	}
	return resp, nil
}

// refusal turns an ERROR frame during the handshake into an error.
func refusal(f wire.Frame) error {
	if f.Type != wire.TypeError {
		return nil
	}
	re := decodeError(f.Payload)
	if re.Code == spear.CodeAuthFailed {
		return fmt.Errorf("%w: %w", spear.ErrAuthFailed, re)
	}
	return re
}
