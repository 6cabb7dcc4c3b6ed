package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/propagation"

	"github.com/spear-go/spear/agent/api"
)

// Limits of the HTTP API.
const (
	maxJSONBody     = 64 << 10
	defaultLogLines = 100
	maxLogLines     = 10000
)

// Handler returns the HTTP/JSON API (docs/agent.md):
//
//	GET    /healthz
//	GET    /metrics
//	GET    /v1/functions
//	POST   /v1/functions/{name}/invoke?method=&timeout=&stream=
//	GET    /v1/instances?function=
//	POST   /v1/instances                  {"function": "..."}
//	DELETE /v1/instances/{id}
//	GET    /v1/instances/{id}/logs?lines=N&follow=
//	POST   /v1/reload                     read the configuration again and apply it
//	GET    /livez
//	GET    /readyz
//	GET    /ui/...                        the dashboard (docs/observability.md)
//
// Errors are JSON api.Error bodies with the status HTTPStatus gives.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.handleHealth)
	mux.HandleFunc("GET /livez", a.handleLive)
	mux.HandleFunc("GET /readyz", a.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/functions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.FunctionList{Functions: a.Functions()})
	})
	mux.HandleFunc("POST /v1/functions/{name}/invoke", a.handleInvoke)
	mux.HandleFunc("GET /v1/instances", a.handleListInstances)
	mux.HandleFunc("POST /v1/instances", a.handleCreateInstance)
	mux.HandleFunc("DELETE /v1/instances/{id}", a.handleDeleteInstance)
	mux.HandleFunc("GET /v1/instances/{id}/logs", a.handleLogs)
	mux.HandleFunc("POST /v1/reload", a.handleReload)
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	mux.Handle("GET /ui/", uiHandler())
	mux.HandleFunc("GET /ui/events", a.handleUIEvents)
	return mux
}

func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	if a.isDraining() {
		writeJSON(w, http.StatusServiceUnavailable, api.Health{Status: "shutting_down"})
		return
	}
	writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
}

func (a *Agent) handleListInstances(w http.ResponseWriter, r *http.Request) {
	list, err := a.Instances(r.URL.Query().Get("function"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.InstanceList{Instances: list})
}

func (a *Agent) handleCreateInstance(w http.ResponseWriter, r *http.Request) {
	var req api.CreateInstance
	if err := decodeJSON(w, r, &req, `{"function": NAME}`); err != nil {
		a.writeError(w, r, err)
		return
	}
	if req.Function == "" {
		a.writeError(w, r, fmt.Errorf("%w: function is required", ErrBadRequest))
		return
	}
	inst, err := a.CreateInstance(r.Context(), req.Function)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, inst)
}

// decodeJSON reads r's body into v: it must be sent as application/json
// and hold one JSON object of the shape named, and nothing after it.
// Errors match ErrUnsupportedMediaType or ErrBadRequest.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, shape string) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return fmt.Errorf("%w: want Content-Type: application/json", ErrUnsupportedMediaType)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: body must be %s: %w", ErrBadRequest, shape, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body must be %s, and nothing after it", ErrBadRequest, shape)
	}
	return nil
}

func (a *Agent) handleDeleteInstance(w http.ResponseWriter, r *http.Request) {
	if err := a.DeleteInstance(r.Context(), r.PathValue("id")); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) handleReload(w http.ResponseWriter, r *http.Request) {
	res, err := a.ReloadConfig(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// handleLogs answers with an instance's latest lines, or with follow=true
// streams them and every new line as server-sent events: one event per
// line, then an "end" event once the instance has stopped (or an "error"
// event).
func (a *Agent) handleLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n := defaultLogLines
	if s := q.Get("lines"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			a.writeError(w, r, fmt.Errorf("%w: lines=%q is not a count", ErrBadRequest, s))
			return
		}
		n = min(v, maxLogLines)
	}
	id := r.PathValue("id")
	if s := q.Get("follow"); s != "" {
		follow, err := strconv.ParseBool(s)
		if err != nil {
			a.writeError(w, r, fmt.Errorf("%w: follow=%q is not a boolean", ErrBadRequest, s))
			return
		}
		if follow {
			a.followLogs(w, r, id, n)
			return
		}
	}
	lines, err := a.Logs(id, n)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.Logs{ID: id, Lines: lines})
}

// followLogs streams an instance's output as server-sent events.
func (a *Agent) followLogs(w http.ResponseWriter, r *http.Request, id string, n int) {
	f, err := a.follower(id)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	s := startSSE(w)
	err = s.streamLines(r.Context(), func(ctx context.Context, fn func(string) error) error {
		return f.FollowLogs(ctx, n, fn)
	})
	switch {
	case r.Context().Err() != nil: // the client left
	case err != nil:
		_ = s.event("error", err.Error())
	default:
		_ = s.event("end", "the instance stopped")
	}
}

// handleInvoke runs a function with the request body as payload and
// answers with the raw result; with stream=true the output is written and
// flushed chunk by chunk, and an error after the first chunk arrives in
// the trailers.
func (a *Agent) handleInvoke(w http.ResponseWriter, r *http.Request) {
	inv, stream, err := a.parseInvoke(w, r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	ctx := a.callerTrace(r.Context(), propagation.HeaderCarrier(r.Header))
	if !stream {
		res, err := a.Invoke(ctx, inv)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		h := w.Header()
		h.Set(api.HeaderInstance, res.Instance.String())
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.Itoa(len(res.Payload)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(res.Payload)
		return
	}
	s, err := a.InvokeStream(ctx, inv)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	defer s.Close()
	// Hold the status until the first chunk: an error before any output
	// still gets its own status.
	first, err := s.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		a.writeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set(api.HeaderInstance, s.Instance.String())
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Trailer", api.TrailerErrorCode+", "+api.TrailerError)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for chunk := first; err == nil; chunk, err = s.Recv() {
		if _, werr := w.Write(chunk); werr != nil {
			return // the client went away; Close abandons the invocation
		}
		_ = rc.Flush()
	}
	if !errors.Is(err, io.EOF) {
		h.Set(api.TrailerErrorCode, ErrorCode(err))
		h.Set(api.TrailerError, oneLine(err.Error()))
	}
}

// parseInvoke reads an invocation from the request.
func (a *Agent) parseInvoke(w http.ResponseWriter, r *http.Request) (Invocation, bool, error) {
	inv := Invocation{Function: r.PathValue("name")}
	if a.function(inv.Function) == nil {
		return inv, false, fmt.Errorf("%w: %q", ErrUnknownFunction, inv.Function)
	}
	q := r.URL.Query()
	inv.Method = q.Get("method")
	inv.Key = r.Header.Get(api.HeaderKey)
	if s := q.Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return inv, false, fmt.Errorf("%w: timeout=%q is not a positive duration such as 5s", ErrBadRequest, s)
		}
		inv.Timeout = d
	}
	stream := false
	if s := q.Get("stream"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return inv, false, fmt.Errorf("%w: stream=%q is not a boolean", ErrBadRequest, s)
		}
		stream = b
	}
	for k, vs := range r.Header {
		if name, ok := strings.CutPrefix(k, api.HeaderMetadataPrefix); ok && name != "" && len(vs) > 0 {
			if inv.Metadata == nil {
				inv.Metadata = map[string]string{}
			}
			inv.Metadata[strings.ToLower(name)] = vs[0]
		}
	}
	limit := int64(a.Config().MaxPayload)
	if r.ContentLength > limit {
		return inv, false, fmt.Errorf("%w: %d bytes, the limit is %d", ErrPayloadTooLarge, r.ContentLength, limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return inv, false, fmt.Errorf("%w: the limit is %d bytes", ErrPayloadTooLarge, limit)
		}
		return inv, false, fmt.Errorf("%w: read body: %w", ErrBadRequest, err)
	}
	inv.Payload = body
	return inv, stream, nil
}

func (a *Agent) writeError(w http.ResponseWriter, r *http.Request, err error) {
	c := classify(err)
	if d := RetryAfter(err); d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((d+time.Second-1)/time.Second)))
	}
	if c.http >= 500 && c.http != http.StatusServiceUnavailable && c.http != http.StatusGatewayTimeout {
		a.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "status", c.http, "err", err)
	}
	writeJSON(w, c.http, api.Error{Error: api.ErrorDetail{Code: c.code, Message: err.Error()}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// oneLine makes s safe as a header value.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r < ' ' && r != '\t' {
			return ' '
		}
		return r
	}, s)
}
