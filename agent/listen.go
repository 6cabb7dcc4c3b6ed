package agent

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/internal/admit"
	"github.com/spear-go/spear/internal/statedir"
)

// The API's idle limits once a connection has authenticated.
const (
	httpIdleTimeout = 2 * time.Minute
	minTokenLen     = 32 // characters of a configured token
)

// apiServer is the API: its listeners, bound before anything else starts
// (so that a second agent on the same ports fails before it starts
// instances), and its servers.
type apiServer struct {
	httpLn net.Listener    // TCP, perhaps TLS; nil when off
	unixLn net.Listener    // the unix socket; nil when off
	grpcLn *admit.Listener // TCP; nil when off
	guard  *guard
	tls    *tls.Config // of the TCP listeners; nil without TLS
	http   *http.Server
	grpc   *grpc.Server
	health *health.Server
}

// listenAPI binds the API's listeners and loads its credentials.
func listenAPI(cfg APIConfig, state *statedir.Dir) (_ *apiServer, err error) {
	s := &apiServer{}
	defer func() {
		if err != nil {
			s.closeListeners()
		}
	}()
	token, err := apiToken(cfg, state)
	if err != nil {
		return nil, err
	}
	s.guard = newGuard(token, cfg.Hostnames)
	if s.tls, err = apiTLS(cfg.TLS); err != nil {
		return nil, err
	}
	if cfg.Socket != addrNone {
		path := cfg.Socket
		if path == "" {
			path = state.Join(api.SocketName)
		}
		if s.unixLn, err = listenSocket(path, cfg.SocketGroup); err != nil {
			return nil, fmt.Errorf("%w: api socket: %w", spear.ErrConfig, err)
		}
	}
	if cfg.HTTPAddr != addrNone {
		if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("%w: http api: %w", spear.ErrConfig, err)
		}
		if s.tls != nil {
			s.httpLn = tls.NewListener(s.httpLn, s.tls)
		}
	}
	if cfg.GRPCAddr != addrNone {
		ln, err := net.Listen("tcp", cfg.GRPCAddr)
		if err != nil {
			return nil, fmt.Errorf("%w: grpc api: %w", spear.ErrConfig, err)
		}
		s.grpcLn = admit.NewListener(ln, cfg.AuthTimeout.D())
		s.guard.admit = s.grpcLn.Admit
	}
	return s, nil
}

// start starts serving a's API on the listeners, each server in g.
func (s *apiServer) start(a *Agent, log *slog.Logger, g interface{ Go(func() error) }) {
	cfg := a.cfg.API
	s.http = &http.Server{
		Handler:     s.guard.HTTP(a.Handler()),
		ConnContext: connContext,
		// A connection's first request must arrive within the auth
		// deadline (TLS handshake included); an unauthenticated one is
		// then closed, an authenticated one kept while it is used.
		ReadHeaderTimeout: cfg.AuthTimeout.D(),
		IdleTimeout:       httpIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	for _, ln := range []net.Listener{s.httpLn, s.unixLn} {
		if ln == nil {
			continue
		}
		g.Go(func() error {
			if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http api: %w", err)
			}
			return nil
		})
	}
	opts := append(s.guard.grpcOptions(), grpc.MaxRecvMsgSize(a.cfg.MaxPayload+64<<10))
	if s.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls)))
	}
	s.grpc = grpc.NewServer(opts...)
	a.RegisterGRPC(s.grpc)
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING) // until ready
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	if s.grpcLn != nil {
		g.Go(func() error {
			// ErrServerStopped: the shutdown came before Serve began.
			if err := s.grpc.Serve(s.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("grpc api: %w", err)
			}
			return nil
		})
	}
}

// addrs names the listeners for the log and RunOptions.Ready.
func (s *apiServer) addrs() (httpAddr, grpcAddr, socket net.Addr) {
	if s.httpLn != nil {
		httpAddr = s.httpLn.Addr()
	}
	if s.grpcLn != nil {
		grpcAddr = s.grpcLn.Addr()
	}
	if s.unixLn != nil {
		socket = s.unixLn.Addr()
	}
	return httpAddr, grpcAddr, socket
}

// closeListeners closes what listenAPI bound, when the servers never
// started.
func (s *apiServer) closeListeners() {
	for _, ln := range []net.Listener{s.httpLn, s.unixLn} {
		if ln != nil {
			ln.Close()
		}
	}
	if s.grpcLn != nil {
		s.grpcLn.Close()
	}
}

// apiToken returns the bearer token: the configured file's, else the
// state directory's, generated there at first start.
func apiToken(cfg APIConfig, state *statedir.Dir) (string, error) {
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return "", fmt.Errorf("%w: api.token_file: %w", spear.ErrConfig, err)
		}
		tok := strings.TrimSpace(string(b))
		if len(tok) < minTokenLen || strings.ContainsAny(tok, " \t\r\n") {
			return "", fmt.Errorf("%w: api.token_file %s: want one word of at least %d characters (openssl rand -hex 32)",
				spear.ErrConfig, cfg.TokenFile, minTokenLen)
		}
		return tok, nil
	}
	b, err := state.ReadFile(api.TokenName)
	if err == nil && len(strings.TrimSpace(string(b))) >= minTokenLen {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: api token: %w", spear.ErrConfig, err)
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	tok := hex.EncodeToString(raw)
	if err := state.WriteFile(api.TokenName, []byte(tok+"\n")); err != nil {
		return "", fmt.Errorf("%w: write api token: %w", spear.ErrConfig, err)
	}
	return tok, nil
}

// apiTLS returns the TCP listeners' TLS config, or nil without one.
func apiTLS(cfg APITLSConfig) (*tls.Config, error) {
	if cfg.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: api.tls: %w", spear.ErrConfig, err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: api.tls.client_ca_file: %w", spear.ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: api.tls.client_ca_file %s holds no PEM certificate", spear.ErrConfig, cfg.ClientCAFile)
		}
		// A certificate is optional (the token still works), but one
		// that is presented must verify.
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.ClientCAs = pool
	}
	return c, nil
}

// maxSocketPath is the longest unix socket path (sun_path, less its NUL).
const maxSocketPath = 107

// listenSocket binds the unix socket at path, usable by the agent's user
// only (0600), or also by group (0660). It is bound in a private
// directory beside path, given its mode, and only then renamed into
// place, so that nobody can connect while it is still open to all. A
// stale socket at path is replaced; a live one is an error.
func listenSocket(path, group string) (net.Listener, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes, over the limit of %d: choose a shorter state_dir or api.socket", path, len(path), maxSocketPath)
	}
	gid := -1
	if group != "" {
		if gid, err = lookupGroup(group); err != nil {
			return nil, err
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".spearlet-sock-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(tmp, "s"), Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // its bound name moves; socketListener removes the new one
	mode := os.FileMode(0o600)
	if gid >= 0 {
		mode = 0o660
		err = os.Chown(filepath.Join(tmp, "s"), -1, gid)
	}
	if err == nil {
		err = os.Chmod(filepath.Join(tmp, "s"), mode)
	}
	if err == nil {
		err = os.Rename(filepath.Join(tmp, "s"), path)
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	return &socketListener{UnixListener: ln, path: path}, nil
}

// socketListener removes its socket file on Close.
type socketListener struct {
	*net.UnixListener
	path string
}

func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	if rmErr := os.Remove(l.path); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
		err = errors.Join(err, rmErr)
	}
	return err
}

// Addr names the socket by its path.
func (l *socketListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// lookupGroup returns the id of a group given by name or number.
func lookupGroup(group string) (int, error) {
	if id, err := strconv.Atoi(group); err == nil {
		return id, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("api.socket_group: %w", err)
	}
	return strconv.Atoi(g.Gid)
}
