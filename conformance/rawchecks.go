package conformance

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/conformance/contract"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/wire"
)

// The checks that run the instance against the runner's own agent.

// launchConnected launches the instance with its secret in SPEAR_SECRET
// and accepts its first connection, offering o.
func launchConnected(ctx context.Context, e *env, o offer) (*rawProc, *rawConn, error) {
	p, err := e.launch(ctx, viaEnv(auth.NewSecret()))
	if err != nil {
		return nil, nil, err
	}
	c, err := p.accept(ctx, e.opts.Patience, o)
	return p, c, err
}

func checkBadAgentProof(ctx context.Context, e *env) (string, error) {
	_, c, err := launchConnected(ctx, e, offer{forge: true})
	if err != nil {
		return "", err
	}
	id, _ := c.request(contract.MethodEcho, []byte("served after a forged proof"))
	seen, err := c.closedWithin(ctx, e.opts.Patience)
	for _, f := range seen {
		if f.ID == id && (f.Type == wire.TypeExecuteResponse || f.Type == wire.TypeError || f.Type == wire.TypeStreamData) {
			return "", fmt.Errorf("the instance answered a request (%s) from an agent whose proof was wrong", f.Type)
		}
	}
	if err != nil {
		return "", fmt.Errorf("after a wrong agent proof: %w", err)
	}
	return "closed the connection without serving", nil
}

func checkSecretHandoff(ctx context.Context, e *env) (string, error) {
	right, wrong := auth.NewSecret(), auth.NewSecret()
	ways := []struct {
		name string
		h    handoff
	}{
		{"SPEAR_SECRET_FD over SPEAR_SECRET_FILE and SPEAR_SECRET", handoff{fd: right, file: wrong, env: wrong, want: right}},
		{"SPEAR_SECRET_FILE over SPEAR_SECRET", handoff{file: right, env: wrong, want: right}},
		{"SPEAR_SECRET alone", handoff{env: right, want: right}},
	}
	var notes []string
	for _, w := range ways {
		p, err := e.launch(ctx, w.h)
		if err != nil {
			return "", err
		}
		c, err := p.accept(ctx, e.opts.Patience, offer{})
		if err != nil {
			return "", fmt.Errorf("%s: %w", w.name, err)
		}
		if err := c.echo(ctx, "handoff"); err != nil {
			return "", fmt.Errorf("%s: %w", w.name, err)
		}
		if p.fd != 0 && p.fdIdentity != "" {
			if now := fdOf(p.pid, p.fd); now == p.fdIdentity {
				return "", fmt.Errorf("%s: descriptor %d still holds the secret's pipe after the handshake; close it once read", w.name, p.fd)
			}
			notes = append(notes, fmt.Sprintf("descriptor %d closed after reading", p.fd))
		}
		p.kill()
	}
	return "preferred FD, then FILE, then the environment; " + strings.Join(notes, ", "), nil
}

// echoInterval is the heartbeat interval heartbeat-echo announces.
const echoInterval = 200 * time.Millisecond

func checkHeartbeatEcho(ctx context.Context, e *env) (string, error) {
	_, c, err := launchConnected(ctx, e, offer{heartbeat: echoInterval})
	if err != nil {
		return "", err
	}
	const probeID = 42
	payload := []byte("conformance-probe-" + randomHex(8))
	if err := c.send(&wire.Frame{Type: wire.TypeHeartbeat, ID: probeID, Payload: payload}); err != nil {
		return "", err
	}
	wctx, cancel := context.WithTimeout(ctx, e.opts.Patience)
	defer cancel()
	for {
		f, err := c.next(wctx)
		if err != nil {
			return "", fmt.Errorf("no HEARTBEAT|ACK for a probe: %w", err)
		}
		if f.Type != wire.TypeHeartbeat {
			continue
		}
		if f.ID != probeID || string(f.Payload) != string(payload) {
			return "", fmt.Errorf("the probe (id %d, payload %s) was answered with id %d, payload %s: echo both", probeID, quote(payload), f.ID, quote(f.Payload))
		}
		break
	}
	// An instance SHOULD probe an idle agent too; report whether it does.
	idle := time.NewTimer(5 * echoInterval)
	defer idle.Stop()
	for c.probes.Load() == 0 {
		select {
		case <-idle.C:
			return "echoed id and payload (the instance does not probe an idle agent itself, which is allowed)", nil
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return "echoed id and payload; the instance probes an idle agent too", nil
}

func checkSigterm(ctx context.Context, e *env) (string, error) {
	if e.transport == channel.Memory {
		return "", skip("a wasm guest gets no signals: the runtime stops it with the terminate signal")
	}
	p, c, err := launchConnected(ctx, e, offer{})
	if err != nil {
		return "", err
	}
	if err := c.echo(ctx, "before sigterm"); err != nil {
		return "", err
	}
	if err := p.signal(syscall.SIGTERM); err != nil {
		return "", err
	}
	seen, err := c.closedWithin(ctx, e.opts.Patience)
	if err != nil {
		return "", fmt.Errorf("after SIGTERM: %w", err)
	}
	if err := p.waitExit(ctx, e.opts.Patience); err != nil {
		return "", fmt.Errorf("after SIGTERM the instance is %w", err)
	}
	if p.exitErr != nil {
		return "", fmt.Errorf("after SIGTERM the instance %s; want status 0", p.describeExit())
	}
	for _, f := range seen {
		if f.Type == wire.TypeClose {
			return "sent CLOSE, closed the connection and exited with status 0", nil
		}
	}
	return "closed the connection and exited with status 0 (without a CLOSE frame, which it SHOULD send)", nil
}

func checkReconnect(ctx context.Context, e *env) (string, error) {
	if e.transport == channel.Memory {
		return "", skip("a wasm guest's standard streams are its only connection; its runtime replaces a failed module instead")
	}
	p, c, err := launchConnected(ctx, e, offer{})
	if err != nil {
		return "", err
	}
	if err := c.echo(ctx, "first connection"); err != nil {
		return "", err
	}
	var took []string
	// Dropped without a word, then closed in order with CLOSE.
	for _, polite := range []bool{false, true} {
		how := "abrupt close"
		if polite {
			how = "CLOSE"
			b, _ := proto.Marshal(&spearpb.Close{Code: uint32(spear.CodeUnavailable), Reason: "conformance: the agent closes this connection"})
			_ = c.send(&wire.Frame{Type: wire.TypeClose, Payload: b})
		}
		c.close()
		start := time.Now()
		// The instance backs off before it reconnects: allow for it.
		c, err = p.accept(ctx, 2*e.opts.Patience, offer{})
		if err != nil {
			return "", fmt.Errorf("after an %s: %w", how, err)
		}
		if err := c.echo(ctx, "after "+how); err != nil {
			return "", fmt.Errorf("after an %s: %w", how, err)
		}
		took = append(took, fmt.Sprintf("%s: %s", how, time.Since(start).Round(time.Millisecond)))
	}
	return "reconnected and served after each (" + strings.Join(took, ", ") + ")", nil
}
