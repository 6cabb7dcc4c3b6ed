// Package client is the Go client of the spearlet HTTP API, the one the
// spearlet CLI uses. The zero Client finds the daemon of the user running
// it by itself: its unix socket in the default state directory, else its
// default address with the token from that directory.
//
//	c := &client.Client{}
//	res, err := c.Invoke(ctx, "echo", []byte("hi"), client.InvokeOptions{})
package client

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spear-go/spear/agent/api"
)

// DefaultAddr is the daemon's default HTTP API address.
const DefaultAddr = "127.0.0.1:7480"

// Client calls a spearlet daemon. Its methods are safe for concurrent use;
// its fields must not change once it is in use.
//
// How it reaches the daemon is worked out at its first call: Addr when
// set, else the socket api.sock in StateDir when there is one, else
// DefaultAddr. Over the socket no token is sent: the socket's file
// permissions decided who may connect. Over TCP it sends Token, else the
// token that the daemon keeps in StateDir (api-token), when this user may
// read it.
type Client struct {
	// Addr is the daemon's address: "host:port", an http(s) URL, or
	// "unix:PATH" (or an absolute PATH) for a unix socket.
	Addr string
	// Token is the bearer token sent over TCP.
	Token string
	// StateDir is the daemon's state directory (default: the one a
	// daemon run by this user uses, statedir.Default).
	StateDir string
	// CAFile, CertFile and KeyFile are PEM files for an https Addr: the
	// CA to check the daemon with (default the system's), and a client
	// certificate and its key.
	CAFile, CertFile, KeyFile string
	// HTTPClient makes the requests (default: one for the address found).
	HTTPClient *http.Client

	once   sync.Once
	target *target
}

// Error is an error response from the daemon.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is the daemon's error category ("not_found", "no_instance",
	// "function_internal", ...; docs/agent.md lists them).
	Code string
	// Message says what went wrong.
	Message string
}

// Error returns the code, status and message.
func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
	}
	return fmt.Sprintf("%s (%d): %s", e.Code, e.StatusCode, e.Message)
}

// Functions lists the configured functions.
func (c *Client) Functions(ctx context.Context) ([]api.Function, error) {
	var out api.FunctionList
	err := c.doJSON(ctx, http.MethodGet, "/v1/functions", nil, &out)
	return out.Functions, err
}

// Instances lists the live and recently stopped instances, of function
// only when it is not empty.
func (c *Client) Instances(ctx context.Context, function string) ([]api.Instance, error) {
	path := "/v1/instances"
	if function != "" {
		path += "?function=" + url.QueryEscape(function)
	}
	var out api.InstanceList
	err := c.doJSON(ctx, http.MethodGet, path, nil, &out)
	return out.Instances, err
}

// CreateInstance starts one more instance of function and returns it once
// it runs.
func (c *Client) CreateInstance(ctx context.Context, function string) (api.Instance, error) {
	var out api.Instance
	err := c.doJSON(ctx, http.MethodPost, "/v1/instances", api.CreateInstance{Function: function}, &out)
	return out, err
}

// DeleteInstance stops the instance id and waits until it is gone.
func (c *Client) DeleteInstance(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, "/v1/instances/"+url.PathEscape(id), nil, nil)
}

// Logs returns up to lines of the instance's latest output lines (0: the
// daemon's default of 100).
func (c *Client) Logs(ctx context.Context, id string, lines int) ([]string, error) {
	path := "/v1/instances/" + url.PathEscape(id) + "/logs"
	if lines > 0 {
		path += "?lines=" + strconv.Itoa(lines)
	}
	var out api.Logs
	err := c.doJSON(ctx, http.MethodGet, path, nil, &out)
	return out.Lines, err
}

// Reload asks the daemon to read its configuration again and apply it,
// and returns what changed. An invalid configuration is an *Error with
// code "invalid_config" whose message lists every problem; the daemon
// keeps serving the old one.
func (c *Client) Reload(ctx context.Context) (api.Reload, error) {
	var out api.Reload
	err := c.doJSON(ctx, http.MethodPost, "/v1/reload", nil, &out)
	return out, err
}

// Health returns nil when the daemon is up and taking invocations
// (GET /healthz).
func (c *Client) Health(ctx context.Context) error {
	var out api.Health
	return c.doJSON(ctx, http.MethodGet, "/healthz", nil, &out)
}

// Live returns nil while the daemon serves its API, draining included
// (GET /livez).
func (c *Client) Live(ctx context.Context) error {
	var out api.Health
	return c.doJSON(ctx, http.MethodGet, "/livez", nil, &out)
}

// Ready returns nil when the daemon is ready for traffic (GET /readyz):
// every function that requires it has its min_instances running. Else
// the *Error's code is "not_ready" (or "shutting_down") and its message
// names the functions that hold it back and why.
func (c *Client) Ready(ctx context.Context) error {
	req, err := c.newRequest(ctx, http.MethodGet, "/readyz", nil)
	if err != nil {
		return err
	}
	t := c.resolve()
	resp, err := t.hc.Do(req)
	if err != nil {
		return fmt.Errorf("reach the spearlet daemon at %s: %w", t.where, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return c.errorOf(t, resp) // refused: 401, 403...
	}
	defer resp.Body.Close()
	var h api.Health
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&h); err != nil {
		return &Error{StatusCode: resp.StatusCode, Message: "undecodable /readyz answer: " + err.Error()}
	}
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var why []string
	for _, f := range h.Waiting {
		msg := fmt.Sprintf("%s: %s, %d of min_instances %d ready", f.Function, f.Health, f.Ready, f.MinInstances)
		if f.Reason != "" {
			msg += " (" + f.Reason + ")"
		}
		if f.LastError != "" {
			msg += ", last error: " + f.LastError
		}
		why = append(why, msg)
	}
	return &Error{StatusCode: resp.StatusCode, Code: h.Status, Message: cmp.Or(strings.Join(why, "; "), h.Status)}
}

// FollowLogs calls fn with up to lines of the instance's latest output
// lines (0: the daemon's default of 100), then with each new line as the
// instance writes it (GET /v1/instances/{id}/logs?follow=true, server-sent
// events). It returns nil once the instance has stopped and fn has had
// its last line, ctx's error when ctx ends first, fn's error, or an
// *Error from the daemon.
func (c *Client) FollowLogs(ctx context.Context, id string, lines int, fn func(line string) error) error {
	path := "/v1/instances/" + url.PathEscape(id) + "/logs?follow=true"
	if lines > 0 {
		path += "&lines=" + strconv.Itoa(lines)
	}
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	err = readEvents(resp.Body, func(event, data string) (bool, error) {
		switch event {
		case "":
			return false, fn(data)
		case "end":
			return true, nil
		case "error":
			return true, &Error{StatusCode: resp.StatusCode, Code: "follow_failed", Message: data}
		}
		return false, nil // events of later versions
	})
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return err
}

// readEvents reads server-sent events from r and calls fn with each
// event's name and data until fn says it is done or fails. A stream that
// ends before that is an error.
func readEvents(r io.Reader, fn func(event, data string) (done bool, err error)) error {
	br := bufio.NewReader(r)
	var event string
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("the daemon ended the event stream early: %w", io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("read event stream: %w", err)
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case line == "":
			if data != nil {
				done, err := fn(event, strings.Join(data, "\n"))
				if done || err != nil {
					return err
				}
			}
			event, data = "", nil
		case field == "event":
			event = value
		case field == "data":
			data = append(data, value)
		}
	}
}

// InvokeOptions refine an invocation.
type InvokeOptions struct {
	// Method selects what the function runs; empty means its default.
	Method string
	// Timeout bounds the invocation on the daemon (0: its invoke_timeout).
	Timeout time.Duration
	// Metadata travels with the invocation (keys are lowercased).
	Metadata map[string]string
	// Key is the affinity key of a function balanced by hash: the same
	// key reaches the same instance while the pool allows.
	Key string
}

// Result is a function's answer.
type Result struct {
	// Instance is the id of the instance that answered.
	Instance string
	Payload  []byte
}

// Invoke runs function with payload and returns its result.
func (c *Client) Invoke(ctx context.Context, function string, payload []byte, opts InvokeOptions) (Result, error) {
	resp, err := c.invoke(ctx, function, payload, opts, false)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Result{}, fmt.Errorf("read result: %w", err)
	}
	return Result{Instance: resp.Header.Get(api.HeaderInstance), Payload: b}, nil
}

// Stream is a streamed invocation's output. Read returns the output as it
// arrives, then io.EOF, or the *Error that ended the invocation. Close it
// when done; closing early abandons the invocation.
type Stream struct {
	// Instance is the id of the instance producing the output.
	Instance string
	resp     *http.Response
}

// Read implements io.Reader.
func (s *Stream) Read(p []byte) (int, error) {
	n, err := s.resp.Body.Read(p)
	if err == io.EOF {
		// Trailers are set once the body is fully read.
		if code := s.resp.Trailer.Get(api.TrailerErrorCode); code != "" {
			return n, &Error{StatusCode: s.resp.StatusCode, Code: code, Message: s.resp.Trailer.Get(api.TrailerError)}
		}
	}
	return n, err
}

// Close releases the stream.
func (s *Stream) Close() error { return s.resp.Body.Close() }

// InvokeStream runs function with payload and streams its output.
func (c *Client) InvokeStream(ctx context.Context, function string, payload []byte, opts InvokeOptions) (*Stream, error) {
	resp, err := c.invoke(ctx, function, payload, opts, true)
	if err != nil {
		return nil, err
	}
	return &Stream{Instance: resp.Header.Get(api.HeaderInstance), resp: resp}, nil
}

func (c *Client) invoke(ctx context.Context, function string, payload []byte, opts InvokeOptions, stream bool) (*http.Response, error) {
	q := url.Values{}
	if opts.Method != "" {
		q.Set("method", opts.Method)
	}
	if opts.Timeout > 0 {
		q.Set("timeout", opts.Timeout.String())
	}
	if stream {
		q.Set("stream", "true")
	}
	path := "/v1/functions/" + url.PathEscape(function) + "/invoke"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := c.newRequest(ctx, http.MethodPost, path, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if opts.Key != "" {
		req.Header.Set(api.HeaderKey, opts.Key)
	}
	for k, v := range opts.Metadata {
		req.Header.Set(api.HeaderMetadataPrefix+k, v)
	}
	return c.send(req)
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	t := c.resolve()
	if t.err != nil {
		return nil, t.err
	}
	req, err := http.NewRequestWithContext(ctx, method, t.base+path, body)
	if err == nil && t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	return req, err
}

// send performs req and turns an error status into an *Error.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	t := c.resolve()
	resp, err := t.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach the spearlet daemon at %s: %w", t.where, err)
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	return nil, c.errorOf(t, resp)
}

// errorOf reads the *Error of an answer with an error status, and closes
// its body.
func (c *Client) errorOf(t *target, resp *http.Response) *Error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &Error{StatusCode: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	var body api.Error
	if json.Unmarshal(b, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message = body.Error.Code, body.Error.Message
	}
	if resp.StatusCode == http.StatusUnauthorized {
		e.Message += ": " + c.authHint(t)
	}
	return e
}

func (c *Client) doJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil || method == http.MethodPost {
		// The daemon takes a POST only with a Content-Type that a web page
		// cannot send cross-origin without asking, even with no body.
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}

// IsCode reports whether err is an *Error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
