package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/runtime"
)

func newTestServer(t *testing.T, cfg Config) (*Agent, *fakeRuntime, *httptest.Server) {
	t.Helper()
	a, rt := newTestAgent(t, cfg)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return a, rt, srv
}

// send makes a request with a body typed as the API wants it (JSON for
// /v1/instances, else bytes); the caller reads and closes the body.
func send(t *testing.T, method, url string, body []byte) *http.Response {
	t.Helper()
	ct := "application/octet-stream"
	if strings.Contains(url, "/v1/instances") {
		ct = "application/json"
	}
	return sendType(t, method, url, ct, body)
}

// sendType makes a request with the given Content-Type ("": none).
func sendType(t *testing.T, method, url, contentType string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// do makes a request and reads the answer.
func do(t *testing.T, method, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp := send(t, method, url, body)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// doType makes a request with the given Content-Type and reads the
// answer.
func doType(t *testing.T, method, url, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp := sendType(t, method, url, contentType, body)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Error.Code
}

func TestHTTPInvoke(t *testing.T) {
	cfg := testConfig(func(f *FunctionConfig) { f.MaxInstances = 1 })
	cfg.MaxPayload = 64
	_, _, srv := newTestServer(t, cfg)
	invoke := srv.URL + "/v1/functions/fn/invoke"

	resp, body := do(t, "POST", invoke, []byte("hello"))
	id := resp.Header.Get(api.HeaderInstance)
	if resp.StatusCode != 200 || id == "" || string(body) != id+"|hello" {
		t.Fatalf("invoke: %d %q (instance %q)", resp.StatusCode, body, id)
	}
	resp, body = do(t, "POST", invoke+"?method=stream&stream=true", []byte("one two three"))
	if resp.StatusCode != 200 || string(body) != "onetwothree" || resp.Trailer.Get(api.TrailerErrorCode) != "" {
		t.Errorf("stream: %d %q trailers %v", resp.StatusCode, body, resp.Trailer)
	}

	tests := []struct {
		name, url string
		body      []byte
		status    int
		code      string
	}{
		{"unknown function", srv.URL + "/v1/functions/nope/invoke", nil, 404, "not_found"},
		{"too large", invoke, make([]byte, 65), 413, "payload_too_large"},
		{"bad timeout", invoke + "?timeout=soon", nil, 400, "invalid_argument"},
		{"zero timeout", invoke + "?timeout=0s", nil, 400, "invalid_argument"},
		{"bad stream flag", invoke + "?stream=maybe", nil, 400, "invalid_argument"},
		{"function fails", invoke + "?method=fail", []byte("boom"), 500, "function_internal"},
		{"unknown method", invoke + "?method=nope", nil, 404, "function_not_found"},
		{"unknown method, streamed", invoke + "?method=nope&stream=true", nil, 404, "function_not_found"},
		{"deadline", invoke + "?method=wait&timeout=50ms", nil, 504, "deadline_exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, "POST", tt.url, tt.body)
			if resp.StatusCode != tt.status || errorCode(t, body) != tt.code {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, body, tt.status, tt.code)
			}
		})
	}
	if resp, _ := do(t, "GET", invoke, nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET invoke: %d, want 405", resp.StatusCode)
	}
}

func TestHTTPMetadata(t *testing.T) {
	a, rt, srv := newTestServer(t, testConfig(nil))
	_ = a
	_ = rt
	req, _ := http.NewRequestWithContext(testCtx(t), "POST", srv.URL+"/v1/functions/fn/invoke", strings.NewReader("x"))
	req.Header.Set(api.HeaderMetadataPrefix+"Trace", "abc")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
}

func TestHTTPInstances(t *testing.T) {
	_, _, srv := newTestServer(t, testConfig(func(f *FunctionConfig) { f.MaxInstances = 1 }))

	resp, body := do(t, "POST", srv.URL+"/v1/instances", []byte(`{"function":"fn"}`))
	var in api.Instance
	if resp.StatusCode != 201 || json.Unmarshal(body, &in) != nil || in.Status != "running" || in.Channel != "memory" {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	for _, tt := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/v1/instances", `{"function":"fn"}`, 409, "pool_full"},
		{"POST", "/v1/instances", `{"function":"nope"}`, 404, "not_found"},
		{"POST", "/v1/instances", `{"fn":1}`, 400, "invalid_argument"},
		{"POST", "/v1/instances", `not json`, 400, "invalid_argument"},
		// Trailing data after the object: one request, one instance.
		{"POST", "/v1/instances", `{"function":"fn"}{"function":"b"}`, 400, "invalid_argument"},
		{"POST", "/v1/instances", `{"function":"fn"} x`, 400, "invalid_argument"},
		{"GET", "/v1/instances?function=nope", "", 404, "not_found"},
		{"GET", "/v1/instances/" + in.ID + "/logs?lines=-1", "", 400, "invalid_argument"},
		{"GET", "/v1/instances/process:nope/logs", "", 404, "not_found"},
		{"DELETE", "/v1/instances/process:nope", "", 404, "not_found"},
		{"DELETE", "/v1/instances/garbage", "", 400, "invalid_argument"},
	} {
		resp, body := do(t, tt.method, srv.URL+tt.path, []byte(tt.body))
		if resp.StatusCode != tt.status || errorCode(t, body) != tt.code {
			t.Errorf("%s %s %s: %d %s, want %d %s", tt.method, tt.path, tt.body, resp.StatusCode, body, tt.status, tt.code)
		}
	}

	// The body must be declared JSON.
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "application/octet-stream"} {
		resp, body := doType(t, "POST", srv.URL+"/v1/instances", ct, []byte(`{"function":"fn"}`))
		if resp.StatusCode != 415 || errorCode(t, body) != "unsupported_media_type" {
			t.Errorf("create as %q: %d %s, want 415 unsupported_media_type", ct, resp.StatusCode, body)
		}
	}

	resp, body = do(t, "GET", srv.URL+"/v1/instances", nil)
	var list api.InstanceList
	if resp.StatusCode != 200 || json.Unmarshal(body, &list) != nil || len(list.Instances) != 1 || list.Instances[0].ID != in.ID {
		t.Errorf("list: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", srv.URL+"/v1/instances/"+in.ID+"/logs?lines=5", nil)
	var logs api.Logs
	if resp.StatusCode != 200 || json.Unmarshal(body, &logs) != nil || len(logs.Lines) != 1 {
		t.Errorf("logs: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", srv.URL+"/v1/functions", nil)
	var fns api.FunctionList
	if resp.StatusCode != 200 || json.Unmarshal(body, &fns) != nil || len(fns.Functions) != 1 || fns.Functions[0].Instances != 1 {
		t.Errorf("functions: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, "DELETE", srv.URL+"/v1/instances/"+in.ID, nil); resp.StatusCode != 204 {
		t.Errorf("delete: %d %s", resp.StatusCode, body)
	}
}

func TestHTTPHealthAndMetrics(t *testing.T) {
	a, _, srv := newTestServer(t, testConfig(nil))
	if resp, body := do(t, "GET", srv.URL+"/healthz", nil); resp.StatusCode != 200 || !strings.Contains(string(body), `"ok"`) {
		t.Errorf("healthz: %d %s", resp.StatusCode, body)
	}
	do(t, "POST", srv.URL+"/v1/functions/fn/invoke", []byte("x"))
	do(t, "POST", srv.URL+"/v1/functions/nope/invoke", []byte("x"))
	_, body := do(t, "GET", srv.URL+"/metrics", nil)
	for _, want := range []string{
		`spearlet_invocations_total{function="fn",outcome="ok"} 1`,
		`spearlet_invocations_total{function="fn",outcome="error"} 0`,
		`spearlet_instances{function="fn",status="running"} 1`,
		`spearlet_instances{function="fn",status="unhealthy"} 0`,
		`spearlet_invocation_duration_seconds_count{function="fn"} 1`,
		`spearlet_instance_starts_total{function="fn",outcome="ok"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(string(body), `function="nope"`) {
		t.Error("metrics have a series for an unknown function")
	}
	if err := a.Drain(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if resp, _ := do(t, "GET", srv.URL+"/healthz", nil); resp.StatusCode != 503 {
		t.Errorf("healthz while draining: %d, want 503", resp.StatusCode)
	}
	if resp, body := do(t, "POST", srv.URL+"/v1/functions/fn/invoke", nil); resp.StatusCode != 503 || errorCode(t, body) != "shutting_down" {
		t.Errorf("invoke while draining: %d %s", resp.StatusCode, body)
	}
}

// POST /v1/reload reads the configuration again: an invalid one is a 400
// invalid_config listing each problem with its line; a valid one answers
// what changed.
func TestHTTPReload(t *testing.T) {
	f := newTestFactory(t)
	src := []byte("functions: [{name: fn, runtime: process, comand: x}]\n")
	a, err := New(Config{Functions: []FunctionConfig{fnConfig("fn", 0)}}, Options{
		Runtimes: []runtime.Runtime{newFakeRuntime(t, spear.Process, f)},
		Load:     func() (Config, error) { return ParseConfig(src) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	resp, body := do(t, "POST", srv.URL+"/v1/reload", nil)
	if resp.StatusCode != 400 || errorCode(t, body) != "invalid_config" || !strings.Contains(string(body), `line 1, column 42: functions[0].comand: unknown field; did you mean \"command\"?`) {
		t.Errorf("invalid reload: %d %s", resp.StatusCode, body)
	}
	src = []byte("functions: [{name: fn, runtime: process, command: unused, restart: {initial_backoff: 1ms, max_backoff: 10ms}}, {name: two, runtime: process, command: x}]\n")
	resp, body = do(t, "POST", srv.URL+"/v1/reload", nil)
	var res api.Reload
	if resp.StatusCode != 200 || json.Unmarshal(body, &res) != nil || !slices.Equal(res.Added, []string{"two"}) || !slices.Equal(res.Unchanged, []string{"fn"}) {
		t.Errorf("reload: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, "GET", srv.URL+"/v1/reload", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/reload: %d", resp.StatusCode)
	}
}
