package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// The runner's own agent: enough of the agent's side of the protocol to
// accept an instance's connections one by one and misbehave on purpose
// (forge its proof, drop the connection), which the real agent never does.

// handoff says how a launched instance receives its secret: each non-nil
// field is handed over its own way, and want is the one the agent checks
// the proof against.
type handoff struct {
	fd, file, env spear.Secret
	want          spear.Secret
}

// viaEnv hands s over in SPEAR_SECRET alone, the way every instance can
// read.
func viaEnv(s spear.Secret) handoff { return handoff{env: s, want: s} }

// rawProc is an instance launched against the runner's own agent.
type rawProc struct {
	id         spear.InstanceID
	secret     spear.Secret // what the agent checks proofs against
	maxPayload uint32
	out        *tail
	pid        int                   // 0 for a wasm module
	signal     func(os.Signal) error // nil for a wasm module
	fd         int                   // the secret's descriptor in the child, or 0
	fdIdentity string                // what /proc says that descriptor is, where known

	conns   chan transport.Conn // accepted, not yet taken
	exited  chan struct{}       // closed once the instance has ended
	exitErr error               // how it ended: nil for status 0
	stop    func()              // ends the instance and its listener

	mu     sync.Mutex
	opened []*rawConn // taken, closed by kill
	killed sync.Once
}

func newRawProc(id spear.InstanceID, secret spear.Secret, maxPayload uint32) *rawProc {
	return &rawProc{
		id: id, secret: secret, maxPayload: maxPayload, out: &tail{},
		conns: make(chan transport.Conn, 8), exited: make(chan struct{}),
	}
}

func (p *rawProc) setExit(err error) {
	p.exitErr = err
	close(p.exited)
}

// serve hands the listener's connections to accept until it closes.
func (p *rawProc) serve(ln transport.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		select {
		case p.conns <- c:
		default:
			c.Close() // more than a well-behaved instance opens
		}
	}
}

// kill ends the instance and closes its connections.
func (p *rawProc) kill() {
	p.killed.Do(func() {
		p.stop()
		p.mu.Lock()
		opened := p.opened
		p.mu.Unlock()
		for _, c := range opened {
			c.close()
		}
		for {
			select {
			case c := <-p.conns:
				c.Close()
				continue
			default:
			}
			return
		}
	})
}

// describeExit says how the instance ended.
func (p *rawProc) describeExit() string {
	if p.exitErr == nil {
		return "exited with status 0"
	}
	return p.exitErr.Error()
}

// waitExit waits up to d for the instance to end.
func (p *rawProc) waitExit(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
		return fmt.Errorf("still running %s later", d)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// offer is what the runner's agent announces in its AUTH_RESPONSE, and
// whether it forges its proof.
type offer struct {
	heartbeat time.Duration
	forge     bool
}

// accept waits, up to d, for the instance's next connection and runs the
// agent's side of the handshake on it.
func (p *rawProc) accept(ctx context.Context, d time.Duration, o offer) (*rawConn, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	var conn transport.Conn
	select {
	case conn = <-p.conns:
	default:
		select {
		case conn = <-p.conns:
		case <-p.exited:
			return nil, fmt.Errorf("the instance %s instead of connecting", p.describeExit())
		case <-t.C:
			return nil, fmt.Errorf("the instance did not connect within %s", d)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if o.forge {
		conn = forgingConn{conn}
	}
	lookup := func(id spear.InstanceID) (auth.Credentials, bool) {
		return auth.Credentials{Secret: p.secret}, id == p.id
	}
	give := func(spear.InstanceID, auth.Slot) (auth.Offer, error) {
		return auth.Offer{
			SessionID:         auth.NewSessionID(),
			Features:          channel.Features,
			HeartbeatInterval: uint32(o.heartbeat / time.Millisecond),
			MaxPayload:        p.maxPayload,
		}, nil
	}
	hctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if _, err := auth.Accept(hctx, conn, lookup, give); err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	c := &rawConn{conn: conn, frames: make(chan wire.Frame, 64), quit: make(chan struct{}), patience: d}
	c.readerDone.Add(1)
	go c.read()
	p.mu.Lock()
	p.opened = append(p.opened, c)
	p.mu.Unlock()
	return c, nil
}

// forgingConn replaces the agent's proof in the AUTH_RESPONSE it carries
// with a wrong one.
type forgingConn struct{ transport.Conn }

func (c forgingConn) WriteFrame(f *wire.Frame) error {
	if f.Type != wire.TypeAuthResponse {
		return c.Conn.WriteFrame(f)
	}
	var r spearpb.AuthResponse
	if err := proto.Unmarshal(f.Payload, &r); err != nil {
		return err
	}
	for i := range r.ServerProof {
		r.ServerProof[i] ^= 0x5a
	}
	b, err := proto.Marshal(&r)
	if err != nil {
		return err
	}
	return c.Conn.WriteFrame(&wire.Frame{Type: f.Type, Flags: f.Flags, ID: f.ID, Payload: b})
}

// rawConn is one authenticated connection to the runner's agent. Its
// reader answers the instance's heartbeat probes and queues every other
// frame for next.
type rawConn struct {
	conn     transport.Conn
	frames   chan wire.Frame
	quit     chan struct{}
	patience time.Duration

	readerDone sync.WaitGroup
	err        error // why the reader ended; read after frames is closed
	probes     atomic.Int32
	nextID     atomic.Uint64
	closeOnce  sync.Once
}

func (c *rawConn) read() {
	defer c.readerDone.Done()
	defer close(c.frames)
	for {
		f, err := c.conn.ReadFrame()
		if err != nil {
			c.err = err
			return
		}
		if f.Type == wire.TypeHeartbeat && f.Flags&wire.FlagAck == 0 {
			c.probes.Add(1)
			_ = c.conn.WriteFrame(&wire.Frame{Type: wire.TypeHeartbeat, Flags: wire.FlagAck, ID: f.ID, Payload: f.Payload})
			continue
		}
		select {
		case c.frames <- f:
		case <-c.quit:
			return
		}
	}
}

// errConnEnded is what next returns once the connection has ended.
var errConnEnded = errors.New("the connection ended")

// next returns the next frame other than a probe, or errConnEnded
// (wrapping the reason) once the connection has ended.
func (c *rawConn) next(ctx context.Context) (wire.Frame, error) {
	select {
	case f, ok := <-c.frames:
		if !ok {
			return wire.Frame{}, fmt.Errorf("%w: %w", errConnEnded, c.err)
		}
		return f, nil
	case <-ctx.Done():
		return wire.Frame{}, ctx.Err()
	}
}

// send writes f.
func (c *rawConn) send(f *wire.Frame) error { return c.conn.WriteFrame(f) }

// request writes an EXECUTE_REQUEST for method and returns its id.
func (c *rawConn) request(method string, payload []byte) (uint64, error) {
	id := c.nextID.Add(2) - 1 // the agent's ids are odd
	b := codec.AppendExecuteRequest(nil, &codec.ExecuteRequest{
		Method: method, Payload: payload, TimeoutMs: uint64(c.patience.Milliseconds()),
	})
	return id, c.send(&wire.Frame{Type: wire.TypeExecuteRequest, ID: id, Payload: b})
}

// call runs method and returns its result, skipping unrelated frames.
func (c *rawConn) call(ctx context.Context, method string, payload []byte) ([]byte, error) {
	id, err := c.request(method, payload)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.patience)
	defer cancel()
	for {
		f, err := c.next(ctx)
		if err != nil {
			return nil, fmt.Errorf("no answer to %s: %w", method, err)
		}
		if f.ID != id {
			continue
		}
		switch f.Type {
		case wire.TypeExecuteResponse:
			out, _, err := codec.DecodeExecuteResponse(f.Payload)
			return out, err
		case wire.TypeError:
			return nil, codec.FrameError(f)
		}
		return nil, fmt.Errorf("%s answered %s", f.Type, method)
	}
}

// echo checks one echo round trip.
func (c *rawConn) echo(ctx context.Context, what string) error {
	want := []byte(what + "-" + randomHex(8))
	got, err := c.call(ctx, "echo", want)
	if err != nil {
		return err
	}
	if string(got) != string(want) {
		return fmt.Errorf("echo answered %s, want %s", quote(got), quote(want))
	}
	return nil
}

// close closes the connection and waits for the reader.
func (c *rawConn) close() {
	c.closeOnce.Do(func() {
		close(c.quit)
		c.conn.Close()
	})
	c.readerDone.Wait()
}

// closedWithin waits up to d for the instance to end the connection,
// draining frames; it returns the frames it saw.
func (c *rawConn) closedWithin(ctx context.Context, d time.Duration) ([]wire.Frame, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var seen []wire.Frame
	for {
		f, err := c.next(ctx)
		switch {
		case errors.Is(err, errConnEnded):
			return seen, nil
		case err != nil:
			return seen, fmt.Errorf("the connection was still open %s later", d)
		}
		seen = append(seen, f)
	}
}
