package agent

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/spear-go/spear/agent/api"
)

// guard decides who may use the API and keeps browsers out
// (docs/security.md, "The agent's API"). A caller is authenticated when
// it came in on the unix socket (whose file permissions decided who may
// connect), presented a client certificate that the API's client CA
// verified, or presented the bearer token. Everything else gets 401 or
// UNAUTHENTICATED and no other word.
//
// HTTP requests pass, in order: the Host check (a DNS-rebinding page
// names its own domain), the Origin check (a page of another origin),
// authentication, and the content-type check (a form or text/plain body
// is what a page may send anywhere without asking). gRPC calls need only
// authentication: browsers cannot make them.
type guard struct {
	tokenSum [sha256.Size]byte // SHA-256 of the bearer token
	names    map[string]bool   // host names the TCP listeners answer to, besides IP literals
	// admit marks the gRPC connection from a remote address as
	// authenticated, so that the auth deadline no longer drops it.
	admit func(net.Addr)
}

func newGuard(token string, hostnames []string) *guard {
	g := &guard{tokenSum: sha256.Sum256([]byte(token)), names: map[string]bool{"localhost": true}, admit: func(net.Addr) {}}
	if h, err := os.Hostname(); err == nil && h != "" {
		g.names[strings.ToLower(h)] = true
	}
	for _, h := range hostnames {
		g.names[strings.ToLower(strings.TrimSuffix(h, "."))] = true
	}
	return g
}

// bearer reports whether the "Authorization" value v carries the token,
// in constant time.
func (g *guard) bearer(v string) bool {
	scheme, tok, ok := strings.Cut(v, " ")
	return ok && strings.EqualFold(scheme, "Bearer") && g.token(strings.TrimSpace(tok))
}

// token reports whether tok is the token, in constant time.
func (g *guard) token(tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], g.tokenSum[:]) == 1
}

// tokenCookie holds the token in a browser that opened the dashboard
// with it (/ui/?token=...), as Jupyter's does: HttpOnly, and
// SameSite=Strict, so that no page of another site makes the browser
// send it; the Origin and content-type checks still apply.
const tokenCookie = "spearlet-token"

// dashboardLogin answers a GET of the dashboard whose query carries the
// right token: it stores the token in the cookie and sends the browser
// to the same page without it, so that it leaves the address bar. It
// reports whether it answered.
func (g *guard) dashboardLogin(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet || (r.URL.Path != "/ui" && r.URL.Path != "/ui/") {
		return false
	}
	q := r.URL.Query()
	if !q.Has("token") || !g.token(q.Get("token")) {
		return false
	}
	http.SetCookie(w, &http.Cookie{
		Name: tokenCookie, Value: q.Get("token"), Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
	return true
}

// viaSocketKey marks a request's connection as one on the unix socket.
type viaSocketKey struct{}

// connContext is the HTTP server's ConnContext: it marks connections on
// the unix socket.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if _, ok := c.(*net.UnixConn); ok {
		return context.WithValue(ctx, viaSocketKey{}, true)
	}
	return ctx
}

func viaSocket(ctx context.Context) bool { v, _ := ctx.Value(viaSocketKey{}).(bool); return v }

// HTTP wraps the whole HTTP API.
func (g *guard) HTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local := viaSocket(r.Context())
		switch {
		case !local && !g.ownHost(r.Host):
			refuseHTTP(w, http.StatusForbidden, "forbidden", "host not allowed")
		case foreignOrigin(r):
			refuseHTTP(w, http.StatusForbidden, "forbidden", "cross-origin request refused")
		case !local && g.dashboardLogin(w, r):
		case !local && !g.authenticated(r):
			// Nothing else is said; the connection is not kept for
			// another try.
			w.Header().Set("WWW-Authenticate", `Bearer realm="spearlet"`)
			w.Header().Set("Connection", "close")
			refuseHTTP(w, http.StatusUnauthorized, "unauthenticated", "unauthenticated")
		case !simpleContentOK(r):
			refuseHTTP(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
				"a request with a body needs a Content-Type other than a form or text/plain (application/octet-stream for payloads, application/json for JSON)")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func refuseHTTP(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.Error{Error: api.ErrorDetail{Code: code, Message: msg}})
}

// authenticated reports whether a request over TCP carries the token (in
// its Authorization header, or the dashboard's cookie) or a verified
// client certificate.
func (g *guard) authenticated(r *http.Request) bool {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return true
	}
	if c, err := r.Cookie(tokenCookie); err == nil && g.token(c.Value) {
		return true
	}
	return g.bearer(r.Header.Get("Authorization"))
}

// ownHost reports whether host (a Host header) names this machine: an IP
// literal (which no attacker's DNS can make point here), localhost, the
// hostname, or a configured name. An empty host (HTTP/1.0) passes; a
// browser always sends one.
func (g *guard) ownHost(host string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	return net.ParseIP(host) != nil || g.names[host]
}

// foreignOrigin reports whether a browser sent r from a page of another
// origin: its Sec-Fetch-Site says so, or its Origin names another host
// than the one it asked ("null" included).
func foreignOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return true
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	return err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host)
}

// simpleContentOK refuses a request with a body whose Content-Type is
// missing or one that a browser sends cross-origin without a preflight:
// that is how a page of any origin could otherwise post to the API.
func simpleContentOK(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodDelete:
		return true // no body; DELETE always needs a preflight
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch mt {
	case "text/plain", "application/x-www-form-urlencoded", "multipart/form-data":
		return false
	}
	return true
}

// grpcCheck authenticates a gRPC call and, once it has, admits its
// connection.
func (g *guard) grpcCheck(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "unauthenticated")
	}
	authed := false
	if _, unix := p.Addr.(*net.UnixAddr); unix {
		authed = true
	} else if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
		authed = true
	} else if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, v := range md.Get("authorization") {
			authed = authed || g.bearer(v)
		}
	}
	if !authed {
		return status.Error(codes.Unauthenticated, "unauthenticated")
	}
	g.admit(p.Addr)
	return nil
}

// grpcOptions are the gRPC API server's interceptors.
func (g *guard) grpcOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := g.grpcCheck(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := g.grpcCheck(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}
