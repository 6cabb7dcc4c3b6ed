package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spear-go/spear/agent/api"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestErrorsAndInvoke(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/functions/echo/invoke":
			if r.URL.Query().Get("method") != "m" || r.URL.Query().Get("timeout") != "2s" || r.Header.Get(api.HeaderMetadataPrefix+"K") != "v" {
				http.Error(w, "bad query "+r.URL.RawQuery, 400)
				return
			}
			b, _ := io.ReadAll(r.Body)
			w.Header().Set(api.HeaderInstance, "process:echo-1")
			w.Write(append([]byte("got "), b...))
		case "/v1/functions/stream/invoke":
			w.Header().Set("Trailer", api.TrailerErrorCode+", "+api.TrailerError)
			w.Write([]byte("partial"))
			w.Header().Set(api.TrailerErrorCode, "instance_failed")
			w.Header().Set(api.TrailerError, "it died")
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			w.Write([]byte(`{"error":{"code":"not_found","message":"agent: unknown function: \"x\""}}`))
		}
	}))
	defer srv.Close()
	defer srv.Client().CloseIdleConnections()
	c := &Client{Addr: srv.URL, HTTPClient: srv.Client()}

	res, err := c.Invoke(ctx(t), "echo", []byte("hi"), InvokeOptions{Method: "m", Timeout: 2 * time.Second, Metadata: map[string]string{"K": "v"}})
	if err != nil || string(res.Payload) != "got hi" || res.Instance != "process:echo-1" {
		t.Errorf("Invoke = %+v, %v", res, err)
	}
	_, err = c.Invoke(ctx(t), "x", nil, InvokeOptions{})
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 404 || e.Code != "not_found" || !IsCode(err, "not_found") {
		t.Errorf("Invoke(x): %v, want a not_found *Error", err)
	}
	s, err := c.InvokeStream(ctx(t), "stream", nil, InvokeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, err := io.ReadAll(s)
	if string(b) != "partial" || !IsCode(err, "instance_failed") {
		t.Errorf("stream: %q, %v; want the output, then the trailer's error", b, err)
	}
}

func TestAddr(t *testing.T) {
	empty := t.TempDir() // a state directory without a socket
	for addr, want := range map[string]string{
		"":                       "http://" + DefaultAddr,
		"10.0.0.1:80":            "http://10.0.0.1:80",
		"https://spear.example/": "https://spear.example",
		"unix:/run/s.sock":       "http://localhost",
		"/run/s.sock":            "http://localhost",
	} {
		tg := (&Client{Addr: addr, StateDir: empty}).resolve()
		if tg.err != nil || tg.base != want {
			t.Errorf("address %q: base %q, %v; want %q", addr, tg.base, tg.err, want)
		}
	}
	for _, addr := range []string{"http://", "ftp://x:1"} {
		if tg := (&Client{Addr: addr}).resolve(); tg.err == nil {
			t.Errorf("address %q accepted", addr)
		}
		if _, err := (&Client{Addr: addr}).Functions(ctx(t)); err == nil {
			t.Errorf("Functions with address %q succeeded", addr)
		}
	}
}

// serveAuth is a daemon stand-in that answers /healthz to requests with
// the token tok, or from its unix socket, and 401 to the others.
func serveAuth(t *testing.T, tok string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+tok && r.Host != "localhost" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"code":"unauthenticated","message":"unauthenticated"}}`))
			return
		}
		if r.Host == "localhost" && r.Header.Get("Authorization") != "" {
			http.Error(w, "token sent over the socket", 400)
			return
		}
		w.Write([]byte(`{"status":"ok"}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The client finds the token in the state directory by itself.
func TestFindsToken(t *testing.T) {
	srv := serveAuth(t, "s3cret")
	dir := t.TempDir()
	addr := strings.TrimPrefix(srv.URL, "http://")
	c := &Client{Addr: addr, StateDir: dir}
	err := c.Health(ctx(t))
	if !IsCode(err, "unauthenticated") || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), EnvToken) {
		t.Errorf("without a token: %v; want unauthenticated, saying where the token is looked for", err)
	}
	if err := os.WriteFile(filepath.Join(dir, api.TokenName), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (&Client{Addr: addr, StateDir: dir}).Health(ctx(t)); err != nil {
		t.Errorf("with the state directory's token: %v", err)
	}
	if err := (&Client{Addr: addr, StateDir: t.TempDir(), Token: "s3cret"}).Health(ctx(t)); err != nil {
		t.Errorf("with Token: %v", err)
	}
	err = (&Client{Addr: addr, StateDir: dir, Token: "wrong"}).Health(ctx(t))
	if !IsCode(err, "unauthenticated") || !strings.Contains(err.Error(), "refused the token") {
		t.Errorf("with a wrong token: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// With a socket in the state directory, the zero address goes there, and
// sends no token.
func TestFindsSocket(t *testing.T) {
	srv := serveAuth(t, "s3cret")
	dir, err := os.MkdirTemp("", "sp") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, api.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Config.Handler}
	go hs.Serve(ln)
	defer hs.Close()
	if err := os.WriteFile(filepath.Join(dir, api.TokenName), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Client{StateDir: dir}
	defer c.CloseIdleConnections()
	if err := c.Health(ctx(t)); err != nil {
		t.Fatalf("over the found socket: %v", err)
	}
	if tg := c.resolve(); tg.where != filepath.Join(dir, api.SocketName) || tg.token != "" {
		t.Errorf("target %+v, want the socket and no token", tg)
	}
}

// DashboardURL is the TCP address with the token found as the other calls
// find it; a socket, or no token, is an error that says why.
func TestDashboardURL(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, api.TokenName), []byte("a+b&c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ addr, want string }{
		{"127.0.0.1:7480", "http://127.0.0.1:7480/ui/?token=a%2Bb%26c"},
		{"https://node.example:8443/", "https://node.example:8443/ui/?token=a%2Bb%26c"},
	} {
		got, err := (&Client{Addr: tc.addr, StateDir: dir}).DashboardURL()
		if err != nil || got != tc.want {
			t.Errorf("DashboardURL of %s = %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
	got, err := (&Client{Addr: "127.0.0.1:1", StateDir: dir, Token: "given"}).DashboardURL()
	if want := "http://127.0.0.1:1/ui/?token=given"; err != nil || got != want {
		t.Errorf("with Token: %q, %v; want %q", got, err, want)
	}
	_, err = (&Client{Addr: "unix:/run/x/api.sock", StateDir: dir}).DashboardURL()
	if se, ok := errors.AsType[*SocketError](err); !ok || se.Path != "/run/x/api.sock" || !strings.Contains(err.Error(), "TCP API address") {
		t.Errorf("over a socket: %v; want a *SocketError naming it", err)
	}
	_, err = (&Client{Addr: "127.0.0.1:7480", StateDir: t.TempDir()}).DashboardURL()
	if err == nil || !strings.Contains(err.Error(), "no token") {
		t.Errorf("without a token: %v; want no token", err)
	}
	if _, err := (&Client{Addr: "ftp://x"}).DashboardURL(); err == nil || !strings.Contains(err.Error(), "bad daemon address") {
		t.Errorf("bad address: %v", err)
	}
}
