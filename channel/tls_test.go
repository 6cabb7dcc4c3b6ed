package channel_test

import (
	"context"
	"crypto/tls"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/chantls"
	"github.com/spear-go/spear/internal/statedir"
	"github.com/spear-go/spear/stats"
	"github.com/spear-go/spear/transport"
)

// tlsFactory is a factory whose network channels use TLS in mode.
func tlsFactory(t *testing.T, mode chantls.Mode) (*channel.Factory, *chantls.Agent) {
	t.Helper()
	state, err := statedir.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { state.Close() })
	a, err := chantls.Load(state, chantls.Config{Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	return newFactory(t, channel.Options{TLS: a, Defaults: channel.Config{AuthTimeout: 300 * time.Millisecond}}), a
}

// tryAs dials addr over typ with TLS config cfg (nil: plaintext) and runs
// the handshake as cr's instance, within a short time: a grpc dial that
// cannot succeed retries until its context ends.
func tryAs(t *testing.T, typ channel.Type, addr string, cfg *tls.Config, cr channel.Credentials) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := transport.Dial(ctx, string(typ), addr, transport.DialConfig{TLS: cfg})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = auth.Connect(ctx, conn, cr.ID, cr.Secret)
	return err
}

// Network channels run over TLS: a child instance, told the pin (and in
// mutual mode its certificate) in its environment, connects and answers;
// a plaintext peer gets nowhere. Channels of other transports stay
// without TLS.
func TestTLSChannels(t *testing.T) {
	for _, mode := range []chantls.Mode{chantls.Server, chantls.Mutual} {
		for _, typ := range []channel.Type{channel.TCP, channel.GRPC} {
			t.Run(string(mode)+"/"+string(typ), func(t *testing.T) {
				f, a := tlsFactory(t, mode)
				ch := newChannel(t, f, typ, channel.Config{})
				cr := ch.Credentials()
				if cr.TLS.Pin != a.Pin() || (len(cr.TLS.Cert) > 0) != (mode == chantls.Mutual) {
					t.Fatalf("credentials' TLS %+v", cr.TLS)
				}
				startChild(t, ch)
				waitConnected(t, ch)
				if err := echo(testCtx(t), ch, "over tls"); err != nil {
					t.Fatal(err)
				}
				// Plaintext, even with the right secret, is not served.
				if err := tryAs(t, typ, cr.Address, nil, cr); err == nil {
					t.Error("a plaintext connection authenticated")
				}
				if err := echo(testCtx(t), ch, "still"); err != nil {
					t.Errorf("the instance after the plaintext attempt: %v", err)
				}
			})
		}
	}
	f, _ := tlsFactory(t, chantls.Mutual)
	if cr := newChannel(t, f, channel.Unix, channel.Config{}).Credentials(); !cr.TLS.IsZero() {
		t.Errorf("a unix channel got TLS credentials %+v", cr.TLS)
	}
}

// In mutual mode a stolen secret is not enough: the thief would need the
// victim's certificate too, and another instance's certificate does not
// pass for the victim's.
func TestMutualTLSBindsTheInstance(t *testing.T) {
	for _, typ := range []channel.Type{channel.TCP, channel.GRPC} {
		t.Run(string(typ), func(t *testing.T) {
			f, _ := tlsFactory(t, chantls.Mutual)
			victim := newChannel(t, f, typ, channel.Config{})
			thief := newChannel(t, f, typ, channel.Config{})
			startInProcess(t, victim, nil)
			waitConnected(t, victim)
			crV, crT := victim.Credentials(), thief.Credentials()

			// The thief's own certificate, the victim's id and secret: the
			// TLS layer admits it, the check after the handshake does not.
			cfg, err := crT.TLS.ClientConfig(crT.Secret, crT.Address)
			if err != nil {
				t.Fatal(err)
			}
			if err := tryAs(t, typ, crV.Address, cfg, crV); !errors.Is(err, spear.ErrAuthFailed) {
				t.Errorf("victim's secret over the thief's certificate: %v, want ErrAuthFailed", err)
			}
			// No certificate at all: the TLS handshake fails.
			noCert := crV.TLS
			noCert.Cert = nil
			cfg, _ = noCert.ClientConfig(crV.Secret, crV.Address)
			if err := tryAs(t, typ, crV.Address, cfg, crV); err == nil {
				t.Error("the victim's secret without a certificate authenticated")
			}
			if err := echo(testCtx(t), victim, "unaffected"); err != nil {
				t.Errorf("victim: %v", err)
			}
			if s := victim.Stats(); s.Errors[stats.KindAuth.String()] == 0 {
				t.Errorf("the refused attempt was not counted against the victim: %+v", s.Errors)
			}
		})
	}
}

// An instance told another pin refuses the agent: it never sends its
// proof to a certificate it does not trust.
func TestPinnedAgentOnly(t *testing.T) {
	f, _ := tlsFactory(t, chantls.Server)
	ch := newChannel(t, f, channel.TCP, channel.Config{})
	cr := ch.Credentials()
	_, other := tlsFactory(t, chantls.Server)
	cr.TLS.Pin = other.Pin()
	cfg, err := cr.TLS.ClientConfig(cr.Secret, cr.Address)
	if err != nil {
		t.Fatal(err)
	}
	_, err = transport.Dial(testCtx(t), "tcp", cr.Address, transport.DialConfig{TLS: cfg})
	if !errors.Is(err, chantls.ErrPinMismatch) || !errors.Is(err, spear.ErrConnectionFailed) {
		t.Errorf("dial with another pin: %v, want ErrPinMismatch", err)
	}
}
