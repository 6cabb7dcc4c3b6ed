package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/internal/statedir"
)

// The environment variables FromEnv reads.
const (
	// EnvAddr is the daemon's address (Client.Addr).
	EnvAddr = "SPEARLET_ADDR"
	// EnvToken is the bearer token for TCP (Client.Token).
	EnvToken = "SPEARLET_TOKEN"
	// EnvStateDir is the daemon's state directory (Client.StateDir), where
	// its socket and token are found; the daemon reads it too.
	EnvStateDir = "SPEARLET_STATE_DIR"
	// EnvCAFile, EnvCertFile and EnvKeyFile are PEM files for an https
	// address: the CA to check the daemon's certificate with (default
	// the system's), and a client certificate and key for mutual TLS.
	EnvCAFile   = "SPEARLET_CA_FILE"
	EnvCertFile = "SPEARLET_CERT_FILE"
	EnvKeyFile  = "SPEARLET_KEY_FILE"
)

// unixPrefix starts an Addr that names a unix socket ("unix:/path").
const unixPrefix = "unix:"

// FromEnv returns a client configured from the environment: addr, else
// $SPEARLET_ADDR; $SPEARLET_TOKEN; $SPEARLET_STATE_DIR; and for an https
// address $SPEARLET_CA_FILE, $SPEARLET_CERT_FILE and $SPEARLET_KEY_FILE.
// What is not set is found as the zero Client finds it.
func FromEnv(addr string) *Client {
	if addr == "" {
		addr = os.Getenv(EnvAddr)
	}
	return &Client{
		Addr:     addr,
		Token:    os.Getenv(EnvToken),
		StateDir: os.Getenv(EnvStateDir),
		CAFile:   os.Getenv(EnvCAFile),
		CertFile: os.Getenv(EnvCertFile),
		KeyFile:  os.Getenv(EnvKeyFile),
	}
}

// target is how a Client reaches the daemon, worked out once.
type target struct {
	base   string // URL prefix: "http://localhost" over the socket
	hc     *http.Client
	token  string // sent over TCP only
	where  string // for messages: the socket path or the address
	socket bool   // reached through a unix socket
	err    error
}

// resolve works out the target once; see Client.
func (c *Client) resolve() *target {
	c.once.Do(func() { c.target = c.find() })
	return c.target
}

func (c *Client) find() *target {
	stateDir := c.StateDir
	if stateDir == "" {
		stateDir = statedir.Default()
	}
	addr := c.Addr
	if addr == "" {
		sock := filepath.Join(stateDir, api.SocketName)
		if fi, err := os.Stat(sock); err == nil && fi.Mode().Type() == fs.ModeSocket {
			addr = unixPrefix + sock
		} else {
			addr = DefaultAddr
		}
	}
	if path, ok := strings.CutPrefix(addr, unixPrefix); ok || filepath.IsAbs(addr) {
		if !ok {
			path = addr
		}
		hc := c.HTTPClient
		if hc == nil {
			dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			}
			hc = &http.Client{Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 16}}
		}
		return &target{base: "http://localhost", hc: hc, where: path, socket: true}
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return &target{err: fmt.Errorf("bad daemon address %q: want host:port, an http(s) URL, or unix:PATH", c.Addr)}
	}
	t := &target{base: strings.TrimSuffix(u.String(), "/"), hc: c.HTTPClient, token: c.Token, where: u.Host}
	if t.token == "" {
		// The daemon's own token, when this user may read it.
		if b, err := os.ReadFile(filepath.Join(stateDir, api.TokenName)); err == nil {
			t.token = strings.TrimSpace(string(b))
		}
	}
	if t.hc == nil {
		t.hc = http.DefaultClient
		if u.Scheme == "https" && (c.CAFile != "" || c.CertFile != "") {
			cfg, err := c.tlsConfig()
			if err != nil {
				return &target{err: err}
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = cfg
			t.hc = &http.Client{Transport: tr}
		}
	}
	return t
}

// SocketError is the answer of DashboardURL for a client that reaches
// the daemon through its unix socket, which a browser cannot use.
type SocketError struct{ Path string }

// Error says why there is no address for a browser.
func (e *SocketError) Error() string {
	return fmt.Sprintf("the daemon is reached through its unix socket %s, which a browser cannot use: "+
		"the dashboard needs its TCP API address (api.http_addr, default %s)", e.Path, DefaultAddr)
}

// DashboardURL returns the address at which a browser logs in to the
// daemon's dashboard: the daemon's HTTP API address with the token in
// the query (/ui/?token=...), which the daemon trades for a cookie
// (docs/security.md). The URL holds the token: give it only to whoever
// may read the token. It fails with a *SocketError when the client
// reaches the daemon through a unix socket, and when it has no token.
// It does not call the daemon.
func (c *Client) DashboardURL() (string, error) {
	t := c.resolve()
	switch {
	case t.err != nil:
		return "", t.err
	case t.socket:
		return "", &SocketError{Path: t.where}
	case t.token == "":
		return "", fmt.Errorf("dashboard: %s", c.authHint(t))
	}
	return t.base + "/ui/?" + url.Values{"token": {t.token}}.Encode(), nil
}

// tlsConfig is the TLS of an https address with a CA or client
// certificate files.
func (c *Client) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("daemon CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("daemon CA: %s holds no PEM certificate", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// authHint completes a 401: where the client looked for a token.
func (c *Client) authHint(t *target) string {
	if t.token != "" {
		return "the daemon refused the token"
	}
	dir := c.StateDir
	if dir == "" {
		dir = statedir.Default()
	}
	return fmt.Sprintf("no token: the daemon's is in %s in its state directory (looked in %s); set $%s or --state-dir, or use its unix socket",
		api.TokenName, dir, EnvToken)
}

// CloseIdleConnections closes the idle connections of the client's
// transport. The client stays usable.
func (c *Client) CloseIdleConnections() {
	if t := c.resolve(); t.hc != nil {
		t.hc.CloseIdleConnections()
	}
}
