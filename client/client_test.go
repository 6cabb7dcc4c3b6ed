package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
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
	for addr, want := range map[string]string{
		"":                       "http://" + DefaultAddr,
		"10.0.0.1:80":            "http://10.0.0.1:80",
		"https://spear.example/": "https://spear.example",
	} {
		got, err := (&Client{Addr: addr}).baseURL()
		if err != nil || got != want {
			t.Errorf("baseURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	if _, err := (&Client{Addr: "http://"}).baseURL(); err == nil {
		t.Error("baseURL accepted an address without a host")
	}
}
