package chantls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/chantls"
	"github.com/spear-go/spear/internal/statedir"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openState(t *testing.T) *statedir.Dir {
	t.Helper()
	d, err := statedir.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

var testID = spear.InstanceID{Runtime: spear.Process, Name: "fn-1"}

// handshake runs a TLS handshake between the agent's server config and
// the instance's client config, and returns the server's view and both
// errors.
func handshake(t *testing.T, server, client *tls.Config) (*tls.ConnectionState, error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := tls.Server(a, server)
	cli := tls.Client(b, client)
	errc := make(chan error, 1)
	go func() {
		err := cli.HandshakeContext(ctx)
		if err != nil {
			b.Close()
		}
		errc <- err
	}()
	serr := srv.HandshakeContext(ctx)
	if serr != nil {
		a.Close()
	}
	cerr := <-errc
	st := srv.ConnectionState()
	return &st, serr, cerr
}

func TestOffIsNil(t *testing.T) {
	for _, m := range []chantls.Mode{"", chantls.None} {
		a, err := chantls.Load(nil, chantls.Config{Mode: m})
		if a != nil || err != nil {
			t.Errorf("Load(mode %q) = %v, %v; want nil, nil", m, a, err)
		}
	}
	if _, err := chantls.Load(nil, chantls.Config{Mode: "maybe"}); !errors.Is(err, spear.ErrInvalidConfig) {
		t.Errorf("bad mode: %v", err)
	}
	if cfg, err := (chantls.Instance{}).ClientConfig(nil, "x:1"); cfg != nil || err != nil {
		t.Errorf("zero Instance: %v, %v", cfg, err)
	}
	if env := (chantls.Instance{}).Env(); env != nil {
		t.Errorf("zero Instance env %q", env)
	}
}

func TestGeneratedPinned(t *testing.T) {
	state := openState(t)
	a, err := chantls.Load(state, chantls.Config{Mode: chantls.Server})
	if err != nil {
		t.Fatal(err)
	}
	secret := auth.NewSecret()
	in, err := a.Issue(testID, secret)
	if err != nil || in.Pin != a.Pin() || in.CA != nil || in.Cert != nil {
		t.Fatalf("Issue = %+v, %v; want the pin only", in, err)
	}
	// The instance learns it from its environment.
	env := map[string]string{}
	for _, kv := range in.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if env[spear.EnvTLSPin] != a.Pin() || len(env) != 1 {
		t.Fatalf("env %v", env)
	}
	in = chantls.FromEnv(func(k string) string { return env[k] })
	cc, err := in.ClientConfig(secret, "10.1.2.3:7071")
	if err != nil {
		t.Fatal(err)
	}
	if _, serr, cerr := handshake(t, a.ServerConfig(), cc); serr != nil || cerr != nil {
		t.Fatalf("pinned handshake: server %v, client %v", serr, cerr)
	}
	if err := a.CheckPeer(nil, testID); err != nil {
		t.Errorf("CheckPeer in mode on: %v", err)
	}

	// Kept across restarts: the same pin from the same state directory.
	again, err := chantls.Load(state, chantls.Config{Mode: chantls.Server})
	if err != nil || again.Pin() != a.Pin() {
		t.Errorf("second Load: pin %s, %v; want %s", again.Pin(), err, a.Pin())
	}
	for _, f := range []string{"tls/agent-cert.pem", "tls/agent-key.pem"} {
		fi, err := os.Stat(state.Join(f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", f, fi, err)
		}
	}

	// Another agent's certificate is refused by the pin.
	other, err := chantls.Load(openState(t), chantls.Config{Mode: chantls.Server})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, cerr := handshake(t, other.ServerConfig(), cc); !errors.Is(cerr, chantls.ErrPinMismatch) {
		t.Errorf("another agent's certificate: %v, want ErrPinMismatch", cerr)
	}
	if _, err := (chantls.Instance{Pin: "zz"}).ClientConfig(secret, "x:1"); !errors.Is(err, spear.ErrConfig) {
		t.Errorf("bad pin: %v", err)
	}
}

func TestMutual(t *testing.T) {
	a, err := chantls.Load(openState(t), chantls.Config{Mode: chantls.Mutual})
	if err != nil {
		t.Fatal(err)
	}
	secret := auth.NewSecret()
	in, err := a.Issue(testID, secret)
	if err != nil || len(in.Cert) == 0 {
		t.Fatalf("Issue = %+v, %v", in, err)
	}
	cc, err := in.ClientConfig(secret, "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	st, serr, cerr := handshake(t, a.ServerConfig(), cc)
	if serr != nil || cerr != nil {
		t.Fatalf("mutual handshake: server %v, client %v", serr, cerr)
	}
	if err := a.CheckPeer(st, testID); err != nil {
		t.Errorf("CheckPeer for its own id: %v", err)
	}
	other := spear.InstanceID{Runtime: spear.Process, Name: "fn-2"}
	if err := a.CheckPeer(st, other); !errors.Is(err, chantls.ErrWrongCertificate) || !errors.Is(err, spear.ErrAuthFailed) {
		t.Errorf("CheckPeer for another id: %v, want ErrWrongCertificate", err)
	}
	if err := a.CheckPeer(nil, testID); !errors.Is(err, chantls.ErrWrongCertificate) {
		t.Errorf("CheckPeer without TLS: %v", err)
	}

	// Without a certificate, or with the certificate and another secret
	// (whose key does not match), the agent refuses the handshake.
	noCert := in
	noCert.Cert = nil
	cc, _ = noCert.ClientConfig(secret, "127.0.0.1:1")
	if _, serr, _ := handshake(t, a.ServerConfig(), cc); serr == nil {
		t.Error("handshake without a client certificate succeeded")
	}
	cc, _ = in.ClientConfig(auth.NewSecret(), "127.0.0.1:1")
	if _, serr, cerr := handshake(t, a.ServerConfig(), cc); serr == nil && cerr == nil {
		t.Error("handshake with a key from another secret succeeded")
	}
	// A certificate that another CA issued is refused too.
	b, err := chantls.Load(openState(t), chantls.Config{Mode: chantls.Mutual})
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := b.Issue(testID, secret)
	foreign.Pin = a.Pin()
	cc, _ = foreign.ClientConfig(secret, "127.0.0.1:1")
	if _, serr, _ := handshake(t, a.ServerConfig(), cc); serr == nil {
		t.Error("handshake with another agent's client certificate succeeded")
	}
}

// writeCA makes a CA and a server certificate it signs for name, and
// returns the file paths.
func writeCA(t *testing.T, name string) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	write := func(file, typ string, der []byte) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "PRIVATE KEY", keyDER)
}

func TestConfiguredCA(t *testing.T) {
	caFile, certFile, keyFile := writeCA(t, "agent.example")
	a, err := chantls.Load(openState(t), chantls.Config{Mode: chantls.Server, CertFile: certFile, KeyFile: keyFile, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := a.Issue(testID, nil)
	if in.Pin != "" || len(in.CA) == 0 {
		t.Fatalf("Issue = %+v, want the CA and no pin", in)
	}
	// Checked by name: the host dialled, or the configured server name.
	cc, err := in.ClientConfig(nil, "agent.example:7071")
	if err != nil {
		t.Fatal(err)
	}
	if _, serr, cerr := handshake(t, a.ServerConfig(), cc); serr != nil || cerr != nil {
		t.Fatalf("CA handshake: server %v, client %v", serr, cerr)
	}
	cc, _ = in.ClientConfig(nil, "10.0.0.1:7071")
	if _, _, cerr := handshake(t, a.ServerConfig(), cc); cerr == nil {
		t.Error("a certificate for agent.example passed for 10.0.0.1")
	}
	in.ServerName = "agent.example"
	cc, _ = in.ClientConfig(nil, "10.0.0.1:7071")
	if _, serr, cerr := handshake(t, a.ServerConfig(), cc); serr != nil || cerr != nil {
		t.Errorf("with SPEAR_TLS_SERVER_NAME: server %v, client %v", serr, cerr)
	}

	// A configured certificate without a CA is pinned.
	b, err := chantls.Load(openState(t), chantls.Config{Mode: chantls.Server, CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if in, _ := b.Issue(testID, nil); in.Pin == "" || in.CA != nil {
		t.Errorf("configured cert without CA: %+v, want a pin", in)
	}
	if _, err := chantls.Load(openState(t), chantls.Config{Mode: chantls.Server, CertFile: certFile, KeyFile: certFile}); !errors.Is(err, spear.ErrConfig) {
		t.Errorf("mismatched key file: %v", err)
	}
}

// ClientKey is a fixed function of the secret, which other languages
// rebuild: docs/protocol.md ("TLS") has this vector, and the Python and
// TypeScript SDKs' tests check it too.
func TestClientKeyVector(t *testing.T) {
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i)
	}
	k := chantls.ClientKey(secret)
	seed, pub := hex.EncodeToString(k.Seed()), hex.EncodeToString(k.Public().(ed25519.PublicKey))
	if seed != "b5636f9c45f8b477b50d20be9f4a667935e5060fa78c149012d901a900f9ef5d" {
		t.Errorf("seed %s", seed)
	}
	if pub != "8657c19355be9f9eda93335916e424d77b55fc13537a59125d7969ef13bbf048" {
		t.Errorf("public key %s", pub)
	}
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{seed, pub, "spear-tls-client-key-v1", "302e020100300506032b657004220420"} {
		if !strings.Contains(string(doc), v) {
			t.Errorf("docs/protocol.md no longer shows %s", v)
		}
	}
}
