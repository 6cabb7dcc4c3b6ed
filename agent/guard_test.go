package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/internal/statedir"
	"github.com/spear-go/spear/proto/agentpb"
)

// apiFixture is the API of a test agent on its real listeners: TCP for
// HTTP and gRPC, and the unix socket.
type apiFixture struct {
	httpURL, grpcAddr, socket string
	token                     string
	unix                      *http.Client // over the socket
}

func serveAPI(t *testing.T, mod func(*APIConfig)) *apiFixture {
	t.Helper()
	cfg := testConfig(nil)
	cfg.API = APIConfig{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", Hostnames: []string{"spear.example"}}
	if mod != nil {
		mod(&cfg.API)
	}
	cfg = cfg.withDefaults()
	dir, err := os.MkdirTemp("", "spear-api-") // short, for the socket's path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	state, err := statedir.Open(filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { state.Close() })
	srv, err := listenAPI(cfg.API, state)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := newTestAgent(t, cfg)
	var g errgroup.Group
	srv.start(a, a.log, &g)
	t.Cleanup(func() {
		srv.http.Close()
		srv.grpc.Stop()
		if err := g.Wait(); err != nil {
			t.Error(err)
		}
	})
	tok, err := os.ReadFile(state.Join(api.TokenName))
	if err != nil {
		t.Fatal(err)
	}
	f := &apiFixture{
		httpURL:  "http://" + srv.httpLn.Addr().String(),
		grpcAddr: srv.grpcLn.Addr().String(),
		socket:   state.Join(api.SocketName),
		token:    strings.TrimSpace(string(tok)),
	}
	f.unix = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", f.socket)
	}}}
	t.Cleanup(f.unix.CloseIdleConnections)
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	return f
}

// request is one HTTP request of an attack table.
type request struct {
	method, path string
	header       map[string]string
	body         string
}

func (f *apiFixture) send(t *testing.T, hc *http.Client, base string, r request) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), r.method, base+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (f *apiFixture) bearer() string { return "Bearer " + f.token }

const unauthenticatedBody = `{
  "error": {
    "code": "unauthenticated",
    "message": "unauthenticated"
  }
}
`

// Without credentials, every route answers 401 and says nothing else.
func TestAPIUnauthenticatedHTTP(t *testing.T) {
	f := serveAPI(t, nil)
	octet := map[string]string{"Content-Type": "application/octet-stream"}
	for _, r := range []request{
		{method: "GET", path: "/healthz"},
		{method: "GET", path: "/metrics"},
		{method: "GET", path: "/v1/functions"},
		{method: "GET", path: "/v1/instances"},
		{method: "GET", path: "/no/such/route"},
		{method: "POST", path: "/v1/functions/fn/invoke", header: octet, body: "x"},
		{method: "POST", path: "/v1/functions/nope/invoke", header: octet, body: "x"},
		{method: "POST", path: "/v1/instances", header: map[string]string{"Content-Type": "application/json"}, body: `{"function":"fn"}`},
		{method: "DELETE", path: "/v1/instances/process:fn-1"},
		{method: "POST", path: "/v1/functions/fn/invoke", header: map[string]string{"Authorization": "Bearer wrong", "Content-Type": "application/octet-stream"}},
		{method: "POST", path: "/v1/functions/fn/invoke", header: map[string]string{"Authorization": f.token, "Content-Type": "application/octet-stream"}},
		{method: "POST", path: "/v1/functions/fn/invoke", header: map[string]string{"Authorization": "Basic " + f.token, "Content-Type": "application/octet-stream"}},
	} {
		resp, body := f.send(t, http.DefaultClient, f.httpURL, r)
		if resp.StatusCode != 401 || body != unauthenticatedBody || resp.Header.Get("WWW-Authenticate") == "" || !resp.Close {
			t.Errorf("%s %s %v: %d %q close=%v; want 401, the bare body, and the connection closed", r.method, r.path, r.header, resp.StatusCode, body, resp.Close)
		}
	}

	// With the token over TCP, or with nothing over the socket, it works.
	ok := request{method: "POST", path: "/v1/functions/fn/invoke", header: map[string]string{"Content-Type": "application/octet-stream", "Authorization": f.bearer()}, body: "hi"}
	if resp, body := f.send(t, http.DefaultClient, f.httpURL, ok); resp.StatusCode != 200 || !strings.HasSuffix(body, "|hi") {
		t.Errorf("with the token: %d %q", resp.StatusCode, body)
	}
	ok.header["Authorization"] = "bearer  " + f.token // the scheme is case-insensitive
	if resp, _ := f.send(t, http.DefaultClient, f.httpURL, ok); resp.StatusCode != 200 {
		t.Errorf("with the token, scheme lowercased: %d", resp.StatusCode)
	}
	delete(ok.header, "Authorization")
	if resp, body := f.send(t, f.unix, "http://localhost", ok); resp.StatusCode != 200 || !strings.HasSuffix(body, "|hi") {
		t.Errorf("over the socket: %d %q", resp.StatusCode, body)
	}
	fi, err := os.Stat(f.socket)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: %v, %v; want mode 0600", f.socket, fi, err)
	}
}

// The issue's request from a web page: a foreign Origin and a text/plain
// body, which a browser sends without asking. Refused, with the token or
// without, and so is every other cross-origin request.
func TestAPICrossOrigin(t *testing.T) {
	f := serveAPI(t, nil)
	for _, auth := range []string{"", f.bearer()} {
		for _, r := range []request{
			{method: "POST", path: "/v1/instances", body: `{"function":"fn"}`,
				header: map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain"}},
			{method: "POST", path: "/v1/functions/fn/invoke", body: "x",
				header: map[string]string{"Origin": "http://evil.example", "Content-Type": "application/octet-stream"}},
			{method: "GET", path: "/v1/functions", header: map[string]string{"Origin": "null"}},
			{method: "GET", path: "/v1/functions", header: map[string]string{"Sec-Fetch-Site": "cross-site"}},
			{method: "DELETE", path: "/v1/instances/process:fn-1", header: map[string]string{"Sec-Fetch-Site": "same-site"}},
		} {
			if auth != "" {
				r.header["Authorization"] = auth
			}
			resp, body := f.send(t, http.DefaultClient, f.httpURL, r)
			if resp.StatusCode != 403 || !strings.Contains(body, "cross-origin") {
				t.Errorf("%s %s %v: %d %s; want 403", r.method, r.path, r.header, resp.StatusCode, body)
			}
		}
	}
	// The same origin, or none, is fine.
	for _, h := range []map[string]string{
		{"Origin": f.httpURL},
		{"Sec-Fetch-Site": "same-origin"},
		{},
	} {
		h["Authorization"] = f.bearer()
		if resp, body := f.send(t, http.DefaultClient, f.httpURL, request{method: "GET", path: "/v1/functions", header: h}); resp.StatusCode != 200 {
			t.Errorf("%v: %d %s", h, resp.StatusCode, body)
		}
	}
	// Without the Origin check, the POST below would be a form post; the
	// content-type check refuses it too, on its own.
	r := request{method: "POST", path: "/v1/functions/fn/invoke", body: "x", header: map[string]string{"Authorization": f.bearer()}}
	for _, ct := range []string{"", "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		r.header["Content-Type"] = ct
		if resp, body := f.send(t, http.DefaultClient, f.httpURL, r); resp.StatusCode != 415 {
			t.Errorf("invoke as %q: %d %s, want 415", ct, resp.StatusCode, body)
		}
	}
	r.header["Content-Type"] = "application/json"
	if resp, body := f.send(t, http.DefaultClient, f.httpURL, r); resp.StatusCode != 200 {
		t.Errorf("invoke as application/json: %d %s", resp.StatusCode, body)
	}
}

// DNS rebinding: a page on evil.example, its name now pointing at
// 127.0.0.1, sends its own name as Host. Only the listener's own names
// pass.
func TestAPIHostHeader(t *testing.T) {
	f := serveAPI(t, nil)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(f.httpURL, "http://"))
	hostname, _ := os.Hostname()
	for host, want := range map[string]int{
		"evil.example:" + port:     403,
		"evil.example":             403,
		"localhost.evil.example":   403,
		"127.0.0.1.nip.io:" + port: 403,
		"localhost:" + port:        200,
		"LOCALHOST.:" + port:       200,
		"127.0.0.1:" + port:        200,
		"[::1]:" + port:            200,
		"10.9.8.7":                 200, // an IP literal is never the attacker's name
		"spear.example:" + port:    200, // configured
		hostname + ":" + port:      200,
	} {
		resp, body := f.send(t, http.DefaultClient, f.httpURL, request{method: "GET", path: "/v1/functions",
			header: map[string]string{"Host": host, "Authorization": f.bearer()}})
		if resp.StatusCode != want {
			t.Errorf("Host %q: %d %s, want %d", host, resp.StatusCode, body, want)
		}
	}
}

func TestAPIUnauthenticatedGRPC(t *testing.T) {
	f := serveAPI(t, nil)
	conn, err := grpc.NewClient(f.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := agentpb.NewAgentClient(conn)
	for name, ctx := range map[string]context.Context{
		"no token":    testCtx(t),
		"wrong token": metadata.AppendToOutgoingContext(testCtx(t), "authorization", "Bearer nope"),
		"bare token":  metadata.AppendToOutgoingContext(testCtx(t), "authorization", f.token),
	} {
		_, err := c.Invoke(ctx, &agentpb.InvokeRequest{Function: "fn", Payload: []byte("x")})
		if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated || st.Message() != "unauthenticated" {
			t.Errorf("%s: Invoke: %v, want UNAUTHENTICATED and nothing else", name, err)
		}
		if _, err := c.ListFunctions(ctx, &agentpb.ListFunctionsRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: ListFunctions: %v", name, err)
		}
		s, err := c.InvokeStream(ctx, &agentpb.InvokeRequest{Function: "fn"})
		if err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: InvokeStream: %v", name, err)
		}
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: health: %v", name, err)
		}
	}
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "authorization", f.bearer())
	res, err := c.Invoke(ctx, &agentpb.InvokeRequest{Function: "fn", Payload: []byte("x")})
	if err != nil || !strings.HasSuffix(string(res.Payload), "|x") {
		t.Errorf("with the token: %v, %v", res, err)
	}
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// A connection that never sends anything is dropped at the auth deadline
// on every API listener; one that keeps an authenticated gRPC connection
// is not.
func TestAPIStalledConnectionsDropped(t *testing.T) {
	f := serveAPI(t, func(c *APIConfig) { c.AuthTimeout = Duration(300 * time.Millisecond) })
	for name, dial := range map[string]func() (net.Conn, error){
		"http": func() (net.Conn, error) { return net.Dial("tcp", strings.TrimPrefix(f.httpURL, "http://")) },
		"grpc": func() (net.Conn, error) { return net.Dial("tcp", f.grpcAddr) },
		"unix": func() (net.Conn, error) { return net.Dial("unix", f.socket) },
	} {
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		if !closedWithin(c, testTimeout) {
			t.Errorf("%s: a silent connection was kept", name)
		}
		c.Close()
	}
	// An authenticated gRPC connection outlives the deadline.
	conn, err := grpc.NewClient(f.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := agentpb.NewAgentClient(conn)
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "authorization", f.bearer())
	if _, err := c.ListFunctions(ctx, &agentpb.ListFunctionsRequest{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // > the deadline; a state to observe, not a timing assertion
	if _, err := c.ListFunctions(ctx, &agentpb.ListFunctionsRequest{}, grpc.WaitForReady(false)); err != nil {
		t.Errorf("an authenticated connection was dropped: %v", err)
	}
}

// listenAPI binds nothing twice: a second API on the same ports fails.
func TestAPIPortsTaken(t *testing.T) {
	f := serveAPI(t, nil)
	cfg := APIConfig{HTTPAddr: strings.TrimPrefix(f.httpURL, "http://"), GRPCAddr: "127.0.0.1:0", AuthTimeout: Duration(time.Second)}
	state, err := statedir.Open(filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	if _, err := listenAPI(cfg, state); err == nil || !strings.Contains(err.Error(), "http api") {
		t.Errorf("listen on a taken port: %v", err)
	}
	// The socket a live agent serves is not taken over either.
	cfg = APIConfig{HTTPAddr: addrNone, GRPCAddr: addrNone, Socket: f.socket}
	if _, err := listenAPI(cfg, state); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("listen on a live socket: %v", err)
	}
}

func TestAPITokenFile(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	good := filepath.Join(dir, "good")
	tok := strings.Repeat("ab", 20)
	os.WriteFile(short, []byte("hunter2\n"), 0o600)
	os.WriteFile(good, []byte(tok+"\n"), 0o600)
	state, err := statedir.Open(filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	if _, err := apiToken(APIConfig{TokenFile: short}, state); err == nil || !strings.Contains(err.Error(), "at least") {
		t.Errorf("short token: %v", err)
	}
	if _, err := apiToken(APIConfig{TokenFile: filepath.Join(dir, "missing")}, state); err == nil {
		t.Error("missing token file accepted")
	}
	if got, err := apiToken(APIConfig{TokenFile: good}, state); err != nil || got != tok {
		t.Errorf("token file: %q, %v", got, err)
	}
	// Generated once, 0600, and kept.
	first, err := apiToken(APIConfig{}, state)
	if err != nil || len(first) != 64 {
		t.Fatalf("generated token %q, %v", first, err)
	}
	if fi, err := os.Stat(state.Join(api.TokenName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, %v", fi, err)
	}
	if again, _ := apiToken(APIConfig{}, state); again != first {
		t.Error("the token changed between starts")
	}
}

// With a client CA, a client certificate authenticates over HTTP and
// gRPC as the token does; TLS without one still needs the token.
func TestAPIMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	f := serveAPI(t, func(c *APIConfig) {
		c.TLS = APITLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: pki.caFile}
	})
	base := strings.Replace(f.httpURL, "http://", "https://", 1)
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.clientTLS(true)}}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.clientTLS(false)}}
	defer withCert.CloseIdleConnections()
	defer noCert.CloseIdleConnections()
	get := request{method: "GET", path: "/v1/functions"}
	if resp, body := f.send(t, withCert, base, get); resp.StatusCode != 200 {
		t.Errorf("with a client certificate: %d %s", resp.StatusCode, body)
	}
	if resp, _ := f.send(t, noCert, base, get); resp.StatusCode != 401 {
		t.Errorf("TLS without a certificate or token: %d, want 401", resp.StatusCode)
	}
	get.header = map[string]string{"Authorization": f.bearer()}
	if resp, _ := f.send(t, noCert, base, get); resp.StatusCode != 200 {
		t.Errorf("TLS with the token: %d", resp.StatusCode)
	}

	for name, cfg := range map[string]*tls.Config{"with a certificate": pki.clientTLS(true), "without": pki.clientTLS(false)} {
		conn, err := grpc.NewClient(f.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = agentpb.NewAgentClient(conn).ListFunctions(testCtx(t), &agentpb.ListFunctionsRequest{})
		conn.Close()
		if want := name == "without"; (status.Code(err) == codes.Unauthenticated) != want {
			t.Errorf("gRPC %s: %v", name, err)
		}
	}
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate.
type testPKI struct {
	caFile, serverCert, serverKey string
	ca                            *x509.Certificate
	client                        tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, caT, caT, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p.caFile = write("ca.pem", "CERTIFICATE", der)
	issue := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	der, key := issue(2, x509.ExtKeyUsageServerAuth)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	p.serverCert, p.serverKey = write("server.pem", "CERTIFICATE", der), write("server-key.pem", "PRIVATE KEY", keyDER)
	der, key = issue(3, x509.ExtKeyUsageClientAuth)
	p.client = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return p
}

func (p *testPKI) clientTLS(withCert bool) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(p.ca)
	cfg := &tls.Config{RootCAs: roots}
	if withCert {
		cfg.Certificates = []tls.Certificate{p.client}
	}
	return cfg
}

// The dashboard's login: /ui/?token=T with the right token sets an
// HttpOnly, SameSite=Strict cookie and sends the browser on without the
// token; the cookie then authenticates, and is still refused
// cross-origin. A wrong token gets 401 and no cookie.
func TestAPIDashboardCookie(t *testing.T) {
	f := serveAPI(t, nil)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, body := f.send(t, noRedirect, f.httpURL, request{method: "GET", path: "/ui/?token=wrong"})
	if resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
		t.Errorf("wrong token: %d %v %s; want 401 and no cookie", resp.StatusCode, resp.Cookies(), body)
	}
	resp, body = f.send(t, noRedirect, f.httpURL, request{method: "GET", path: "/v1/functions?token=" + f.token})
	if resp.StatusCode != 401 {
		t.Errorf("token in the query of an API route: %d %s; want 401 (only the dashboard's page takes it)", resp.StatusCode, body)
	}
	resp, body = f.send(t, noRedirect, f.httpURL, request{method: "GET", path: "/ui/?token=" + f.token})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("login: %d %q %s; want 303 to /ui/", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == tokenCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" {
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/", cookie)
	}
	withCookie := map[string]string{"Cookie": tokenCookie + "=" + cookie.Value}
	if resp, body := f.send(t, noRedirect, f.httpURL, request{method: "GET", path: "/v1/functions", header: withCookie}); resp.StatusCode != 200 {
		t.Errorf("with the cookie: %d %s", resp.StatusCode, body)
	}
	withCookie["Origin"] = "http://evil.example"
	if resp, body := f.send(t, noRedirect, f.httpURL, request{method: "GET", path: "/v1/functions", header: withCookie}); resp.StatusCode != 403 {
		t.Errorf("the cookie cross-origin: %d %s; want 403", resp.StatusCode, body)
	}
}
