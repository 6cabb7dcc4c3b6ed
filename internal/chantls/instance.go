package chantls

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"

	"github.com/spear-go/spear"
)

// Instance is what an instance is told about the agent's TLS, alongside
// its channel's address: how to check the agent (Pin, or CA and
// ServerName), and in mutual mode its own certificate (Cert; the key is
// ClientKey of its secret). None of it is secret. The zero Instance means
// no TLS.
type Instance struct {
	// Pin is the hex SHA-256 of the agent's certificate (DER).
	Pin string
	// CA holds PEM certificates the agent's must chain to, for
	// ServerName (default: the host the instance dials).
	CA         []byte
	ServerName string
	// Cert is the instance's PEM client certificate (mutual mode).
	Cert []byte
}

// IsZero reports whether in says to dial without TLS.
func (in Instance) IsZero() bool { return in.Pin == "" && len(in.CA) == 0 }

// Env returns in as the SPEAR_TLS_* environment variables of
// docs/protocol.md; none for the zero Instance.
func (in Instance) Env() []string {
	if in.IsZero() {
		return nil
	}
	var env []string
	add := func(k, v string) {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	add(spear.EnvTLSPin, in.Pin)
	add(spear.EnvTLSCA, string(in.CA))
	add(spear.EnvTLSServerName, in.ServerName)
	add(spear.EnvTLSCert, string(in.Cert))
	return env
}

// FromEnv reads an Instance from the SPEAR_TLS_* variables through
// getenv (os.Getenv).
func FromEnv(getenv func(string) string) Instance {
	return Instance{
		Pin:        getenv(spear.EnvTLSPin),
		CA:         []byte(getenv(spear.EnvTLSCA)),
		ServerName: getenv(spear.EnvTLSServerName),
		Cert:       []byte(getenv(spear.EnvTLSCert)),
	}
}

// ErrPinMismatch is the category of a dial whose agent presented another
// certificate than the pinned one. It matches spear.ErrAuthFailed.
var ErrPinMismatch = fmt.Errorf("%w: the agent's TLS certificate does not match %s", spear.ErrAuthFailed, spear.EnvTLSPin)

// ClientConfig returns the tls.Config an instance dials addr with, or nil
// for the zero Instance. secret is the instance's, from which the key of
// its client certificate is derived. Errors match spear.ErrConfig.
func (in Instance) ClientConfig(secret spear.Secret, addr string) (*tls.Config, error) {
	if in.IsZero() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if in.Pin != "" {
		want, err := hex.DecodeString(in.Pin)
		if err != nil || len(want) != sha256.Size {
			return nil, fmt.Errorf("%w: %s is not a hex SHA-256", spear.ErrConfig, spear.EnvTLSPin)
		}
		// The pin replaces chain and name checks: exactly one
		// certificate is accepted.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrPinMismatch
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(got[:], want) != 1 {
				return ErrPinMismatch
			}
			return nil
		}
	} else {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(in.CA) {
			return nil, fmt.Errorf("%w: %s holds no PEM certificate", spear.ErrConfig, spear.EnvTLSCA)
		}
		cfg.RootCAs = pool
		cfg.ServerName = in.ServerName
		if cfg.ServerName == "" {
			cfg.ServerName = addr
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
	}
	if len(in.Cert) > 0 {
		block, _ := pem.Decode(in.Cert)
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: %s holds no PEM certificate", spear.ErrConfig, spear.EnvTLSCert)
		}
		if len(secret) == 0 {
			return nil, errors.New("chantls: mutual TLS needs the instance's secret")
		}
		cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{block.Bytes}, PrivateKey: ClientKey(secret)}}
	}
	return cfg, nil
}
