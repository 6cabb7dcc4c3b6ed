// Package chantls is TLS for the network channels (tcp, grpc): the agent's
// certificate, generated into its state directory or configured; what an
// instance is told so that it can check that certificate (a pin, or a CA
// and a name); the client certificates of mutual TLS; and the tls.Config
// of each side.
//
// TLS here adds confidentiality and a checked agent to the protocol's
// handshake, which still authenticates every instance by its secret. In
// mutual mode the agent also asks each instance for a certificate it
// issued for that instance. The certificate's key is derived from the
// instance's secret (ClientKey), so no key travels besides the secret the
// instance already receives, and a foreign-language instance can rebuild
// it with its standard library (docs/protocol.md, "TLS").
package chantls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/statedir"
)

// Mode says how much TLS the network channels use.
type Mode string

// The modes.
const (
	None   Mode = "none"   // plaintext
	Server Mode = "server" // the instance checks the agent's certificate
	Mutual Mode = "mutual" // and the agent checks the instance's
)

// Config is the agent's TLS configuration (agent.ChannelTLSConfig).
type Config struct {
	Mode Mode
	// CertFile and KeyFile are the agent's certificate and key (PEM);
	// empty means a self-signed pair kept in the state directory.
	CertFile, KeyFile string
	// CAFile, with a configured certificate, is handed to instances to
	// verify it against, for ServerName (default: the host they dial).
	// Without it, instances pin the certificate.
	CAFile, ServerName string
}

// Files in the state directory.
const (
	agentCertFile = "tls/agent-cert.pem"
	agentKeyFile  = "tls/agent-key.pem"
	caCertFile    = "tls/instance-ca-cert.pem"
	caKeyFile     = "tls/instance-ca-key.pem"
)

// Lifetimes of generated certificates; one with less than renewBefore left
// is replaced at the agent's start.
const (
	agentLifetime  = 365 * 24 * time.Hour
	caLifetime     = 10 * 365 * 24 * time.Hour
	clientLifetime = 365 * 24 * time.Hour
	renewBefore    = 30 * 24 * time.Hour
)

// Agent is the agent's side: its certificate, and in mutual mode the CA
// that issues the instances' client certificates. It is immutable and
// safe for concurrent use.
type Agent struct {
	mode       Mode
	cert       tls.Certificate
	pin        string // hex SHA-256 of the leaf's DER
	caPEM      []byte // the configured CA handed to instances, or nil: pin
	serverName string
	issuer     *x509.Certificate // of instance certificates; mutual only
	issuerKey  crypto.Signer
	clientCAs  *x509.CertPool
}

// Load returns the agent's TLS for cfg, or nil when cfg.Mode is None (or
// empty). Generated keys and certificates are read from, or written to,
// the state directory's tls/ (0600 files in a 0700 directory). Errors
// match spear.ErrConfig.
func Load(state *statedir.Dir, cfg Config) (*Agent, error) {
	if cfg.Mode == "" || cfg.Mode == None {
		return nil, nil
	}
	if cfg.Mode != Server && cfg.Mode != Mutual {
		return nil, fmt.Errorf("%w: channel TLS mode %q: want none, server or mutual", spear.ErrInvalidConfig, cfg.Mode)
	}
	a := &Agent{mode: cfg.Mode, serverName: cfg.ServerName}
	var err error
	if cfg.CertFile != "" {
		a.cert, err = tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: channels.tls: %w", spear.ErrConfig, err)
		}
		if cfg.CAFile != "" {
			if a.caPEM, err = os.ReadFile(cfg.CAFile); err != nil {
				return nil, fmt.Errorf("%w: channels.tls.ca_file: %w", spear.ErrConfig, err)
			}
			if !x509.NewCertPool().AppendCertsFromPEM(a.caPEM) {
				return nil, fmt.Errorf("%w: channels.tls.ca_file %s holds no PEM certificate", spear.ErrConfig, cfg.CAFile)
			}
		}
	} else {
		a.cert, err = generated(state, agentCertFile, agentKeyFile, func() (*x509.Certificate, error) {
			return template("spearlet", agentLifetime, false), nil
		})
		if err != nil {
			return nil, err
		}
	}
	sum := sha256.Sum256(a.cert.Certificate[0])
	a.pin = hex.EncodeToString(sum[:])
	if a.mode == Mutual {
		ca, err := generated(state, caCertFile, caKeyFile, func() (*x509.Certificate, error) {
			return template("spearlet instance CA", caLifetime, true), nil
		})
		if err != nil {
			return nil, err
		}
		a.issuer = ca.Leaf
		a.issuerKey = ca.PrivateKey.(crypto.Signer)
		a.clientCAs = x509.NewCertPool()
		a.clientCAs.AddCert(ca.Leaf)
	}
	return a, nil
}

// Mode returns the agent's mode, Server or Mutual.
func (a *Agent) Mode() Mode { return a.mode }

// Pin returns the hex SHA-256 of the agent's certificate.
func (a *Agent) Pin() string { return a.pin }

// ServerConfig returns the tls.Config of the agent's listeners: TLS 1.3,
// and in mutual mode a client certificate issued by the agent required.
// Which instance a certificate is for is checked after the protocol's
// handshake, by CheckPeer.
func (a *Agent) ServerConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{a.cert},
		NextProtos:   []string{"h2", "spear"}, // h2 for the grpc transport
	}
	if a.mode == Mutual {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = a.clientCAs
	}
	return cfg
}

// ErrWrongCertificate is the category of CheckPeer's error: the
// connection's client certificate is not the claimed instance's. It
// matches spear.ErrAuthFailed.
var ErrWrongCertificate = fmt.Errorf("%w: client certificate not issued for this instance", spear.ErrAuthFailed)

// CheckPeer checks, in mutual mode, that the verified client certificate
// of a connection (state) was issued for instance id. In mode Server it
// accepts any connection. Errors match ErrWrongCertificate.
func (a *Agent) CheckPeer(state *tls.ConnectionState, id spear.InstanceID) error {
	if a == nil || a.mode != Mutual {
		return nil
	}
	if state == nil || len(state.VerifiedChains) == 0 || len(state.PeerCertificates) == 0 {
		return fmt.Errorf("%w: no verified client certificate", ErrWrongCertificate)
	}
	if cn := state.PeerCertificates[0].Subject.CommonName; subtle.ConstantTimeCompare([]byte(cn), []byte(id.String())) != 1 {
		return fmt.Errorf("%w: it is for %q, the connection authenticated as %s", ErrWrongCertificate, cn, id)
	}
	return nil
}

// Issue returns what instance id, whose secret is secret, is told: how to
// check the agent, and in mutual mode its client certificate, for the key
// ClientKey derives from secret.
func (a *Agent) Issue(id spear.InstanceID, secret spear.Secret) (Instance, error) {
	in := Instance{ServerName: a.serverName}
	if a.caPEM != nil {
		in.CA = a.caPEM
	} else {
		in.Pin = a.pin
	}
	if a.mode != Mutual {
		return in, nil
	}
	tmpl := template(id.String(), clientLifetime, false)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.issuer, ClientKey(secret).Public(), a.issuerKey)
	if err != nil {
		return Instance{}, fmt.Errorf("issue a client certificate for %s: %w", id, err)
	}
	in.Cert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return in, nil
}

// clientKeyInfo is the HKDF info of ClientKey.
const clientKeyInfo = "spear-tls-client-key-v1"

// ClientKey derives an instance's mutual-TLS key from its secret: the
// Ed25519 key whose seed is HKDF-SHA256(secret, no salt,
// "spear-tls-client-key-v1"), 32 bytes.
func ClientKey(secret spear.Secret) ed25519.PrivateKey {
	seed, err := hkdf.Key(sha256.New, secret, nil, clientKeyInfo, ed25519.SeedSize)
	if err != nil {
		panic("chantls: hkdf: " + err.Error()) // only for lengths beyond 255 hashes
	}
	return ed25519.NewKeyFromSeed(seed)
}

// template is a certificate template with a fresh serial number.
func template(cn string, lifetime time.Duration, ca bool) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	now := time.Now()
	t := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour), // tolerate some clock skew
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  ca,
	}
	if ca {
		t.KeyUsage |= x509.KeyUsageCertSign
	} else {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		t.DNSNames = []string{"localhost"}
		t.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	return t
}

// generated returns the self-signed key pair kept in the state directory
// as certName and keyName, making a new one from tmpl when there is none,
// it does not parse, or it expires within renewBefore.
func generated(state *statedir.Dir, certName, keyName string, tmpl func() (*x509.Certificate, error)) (tls.Certificate, error) {
	certPEM, errC := state.ReadFile(certName)
	keyPEM, errK := state.ReadFile(keyName)
	if errC == nil && errK == nil {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err == nil && time.Until(pair.Leaf.NotAfter) > renewBefore {
			return pair, nil
		}
	} else if err := errors.Join(errC, errK); !errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, fmt.Errorf("%w: %w", spear.ErrConfig, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	t, err := tmpl()
	if err != nil {
		return tls.Certificate{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, t, t, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.MkdirAll(state.Join("tls"), 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %w", spear.ErrConfig, err)
	}
	// The key first: a certificate on disk always has its key.
	if err := state.WriteFile(keyName, keyPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %w", spear.ErrConfig, err)
	}
	if err := state.WriteFile(certName, certPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %w", spear.ErrConfig, err)
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
