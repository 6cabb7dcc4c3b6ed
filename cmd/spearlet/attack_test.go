package main

// Attacks on a running spearlet, from outside, as another local user or a
// web page would make them: each runs beside a loop of legitimate
// invocations, whose failures must be zero.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/client"
	"github.com/spear-go/spear/proto/agentpb"
)

// attackConfig serves the worker over each network channel, so that both
// shared listeners run, with a short auth deadline.
const attackConfig = `
api: {auth_timeout: 2s}
channels: {auth_timeout: 2s}
functions:
  - {name: echo-tcp, runtime: process, command: "@self", args: [worker], min_instances: 1, channel: {type: tcp}}
  - {name: echo-grpc, runtime: process, command: "@self", args: [worker], min_instances: 1, channel: {type: grpc}}
`

// legit invokes both functions in a loop, over the socket and over TCP
// with the token, until stop is called, which returns the number of
// invocations and of failures (with the first few).
func legit(t *testing.T, d *daemon) (stop func() (ok int64, failed int64, errs []error)) {
	t.Helper()
	clients := []*client.Client{
		{StateDir: d.stateDir},                   // finds the socket
		{Addr: d.addr, StateDir: d.stateDir},     // TCP, finds the token
		{Addr: d.addr, Token: d.token(t)},        // TCP, token given
		{Addr: "unix:" + d.socket(), Token: "x"}, // the socket ignores tokens
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg         sync.WaitGroup
		ok, failed atomic.Int64
		mu         sync.Mutex
		errs       []error
	)
	for i, c := range clients {
		for _, fn := range []string{"echo-tcp", "echo-grpc"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ctx.Err() == nil; n++ {
					payload := fmt.Sprintf("legit-%d-%d", i, n)
					ictx, icancel := context.WithTimeout(ctx, 20*time.Second)
					res, err := c.Invoke(ictx, fn, []byte(payload), client.InvokeOptions{})
					icancel()
					switch {
					case ctx.Err() != nil:
						return
					case err == nil && strings.HasSuffix(string(res.Payload), "|"+payload):
						ok.Add(1)
					default:
						if err == nil {
							err = fmt.Errorf("answer %q", res.Payload)
						}
						failed.Add(1)
						mu.Lock()
						if len(errs) < 5 {
							errs = append(errs, fmt.Errorf("%s via client %d: %w", fn, i, err))
						}
						mu.Unlock()
					}
				}
			}()
		}
	}
	return func() (int64, int64, []error) {
		// An attack can end before the first legitimate answer under
		// load: the defence is shown only once some went through.
		for deadline := time.Now().Add(30 * time.Second); ok.Load()+failed.Load() < int64(2*len(clients)) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		for _, c := range clients {
			c.CloseIdleConnections()
		}
		mu.Lock()
		defer mu.Unlock()
		return ok.Load(), failed.Load(), errs
	}
}

func (d *daemon) socket() string { return d.stateDir + "/" + api.SocketName }

// fds counts the daemon's open file descriptors.
func (d *daemon) fds(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

var listeningLine = regexp.MustCompile(`msg=listening .*?transport=(tcp|grpc) address=(\S+)`)

// channelListeners finds the addresses of the daemon's tcp and grpc
// channel listeners in its log.
func (d *daemon) channelListeners(t *testing.T) map[string]string {
	t.Helper()
	var out map[string]string
	eventually(t, "both channel listeners", func() bool {
		out = map[string]string{}
		for _, m := range listeningLine.FindAllStringSubmatch(d.logText(), -1) {
			out[m[1]] = m[2]
		}
		return len(out) == 2
	})
	return out
}

// raiseFileLimit lifts this process's descriptor limit to its hard limit
// (the Go runtime does so too, since 1.19; this says so and checks it).
func raiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < need {
		t.Skipf("RLIMIT_NOFILE is %d, the attack needs %d", lim.Cur, need)
	}
}

const stallPerListener = 2000

// Stall 2,000 silent connections on each listener: the tcp and grpc
// channel listeners, the HTTP and gRPC APIs, and the unix API socket.
// Every one is dropped at the auth deadline, the daemon's descriptor
// count comes back to its baseline, and legitimate invocations go on
// without a failure.
func TestAttackStalledConnections(t *testing.T) {
	raiseFileLimit(t, 5*stallPerListener+1000)
	d := startDaemon(t, "--config", writeConfig(t, attackConfig))
	listeners := d.channelListeners(t)
	targets := map[string][2]string{
		"tcp channel":  {"tcp", listeners["tcp"]},
		"grpc channel": {"tcp", listeners["grpc"]},
		"http api":     {"tcp", d.addr},
		"grpc api":     {"tcp", d.grpcAddr},
		"unix api":     {"unix", d.socket()},
	}
	stopLegit := legit(t, d)
	time.Sleep(time.Second) // warm up: connections made, instances busy
	if _, failed, errs := stopLegit(); failed > 0 {
		t.Fatalf("legitimate invocations failed before the attack: %v", errs)
	}
	var baseline int
	eventually(t, "a steady descriptor count", func() bool {
		a := d.fds(t)
		time.Sleep(200 * time.Millisecond)
		baseline = d.fds(t)
		return a == baseline
	})

	stopLegit = legit(t, d)
	start := time.Now()
	var wg sync.WaitGroup
	type outcome struct {
		dropped, kept, refused int
		last                   time.Duration
	}
	results := make(map[string]*outcome)
	for name := range targets {
		results[name] = &outcome{}
	}
	var mu sync.Mutex // guards the outcomes
	for name, target := range targets {
		res := results[name]
		for range stallPerListener {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialTimeout(target[0], target[1], 30*time.Second)
				if err != nil {
					mu.Lock()
					res.refused++
					mu.Unlock()
					return
				}
				defer c.Close()
				// Silent: read until the agent hangs up, or our patience ends.
				_ = c.SetReadDeadline(time.Now().Add(testTimeout / 2))
				_, err = io.Copy(io.Discard, c)
				var ne net.Error
				kept := errors.As(err, &ne) && ne.Timeout()
				mu.Lock()
				defer mu.Unlock()
				if kept {
					res.kept++
				} else {
					res.dropped++
					res.last = max(res.last, time.Since(start))
				}
			}()
		}
	}
	wg.Wait()
	ok, failed, errs := stopLegit()
	for name, r := range results {
		t.Logf("%-12s %d dropped (the last %s after the attack began), %d kept, %d refused at connect",
			name, r.dropped, r.last.Round(time.Millisecond), r.kept, r.refused)
		if r.kept > 0 || r.dropped+r.refused != stallPerListener {
			t.Errorf("%s: %d silent connections kept past the deadline", name, r.kept)
		}
	}
	t.Logf("legitimate invocations during the attack: %d ok, %d failed", ok, failed)
	if failed > 0 || ok == 0 {
		t.Errorf("legitimate invocations: %d ok, %d failed: %v", ok, failed, errs)
	}
	var now int
	eventually(t, fmt.Sprintf("the descriptor count back to its baseline of %d", baseline), func() bool {
		now = d.fds(t)
		return now <= baseline
	})
	t.Logf("daemon descriptors: baseline %d, after the attack %d", baseline, now)
}

// The API refuses callers without credentials, web pages of other origins
// and DNS-rebound names, and trailing JSON, while legitimate invocations
// go on.
func TestAttackAPI(t *testing.T) {
	d := startDaemon(t, "--config", writeConfig(t, attackConfig))
	for _, fn := range []string{"echo-tcp", "echo-grpc"} {
		eventually(t, fn+"'s instance", func() bool { return len(instances(t, d, fn)) == 1 })
	}
	stopLegit := legit(t, d)
	base := "http://" + d.addr
	send := func(method, path, body string, header map[string]string) (int, string) {
		req, _ := http.NewRequestWithContext(testCtx(t), method, base+path, strings.NewReader(body))
		for k, v := range header {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tok := "Bearer " + d.token(t)
	_, port, _ := net.SplitHostPort(d.addr)

	for _, tc := range []struct {
		name         string
		method, path string
		body         string
		header       map[string]string
		status       int
		contains     string
	}{
		{"no token", "POST", "/v1/instances", `{"function":"echo-tcp"}`, map[string]string{"Content-Type": "application/json"}, 401, `"unauthenticated"`},
		{"wrong token", "GET", "/v1/functions", "", map[string]string{"Authorization": "Bearer 0000"}, 401, `"unauthenticated"`},
		{"the issue's cross-origin request", "POST", "/v1/instances", `{"function":"echo-tcp"}`,
			map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403, "cross-origin"},
		{"cross-origin, with the token", "POST", "/v1/functions/echo-tcp/invoke", "x",
			map[string]string{"Origin": "http://evil.example", "Content-Type": "application/octet-stream", "Authorization": tok}, 403, "cross-origin"},
		{"form post, with the token", "POST", "/v1/functions/echo-tcp/invoke", "x",
			map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": tok}, 415, "Content-Type"},
		{"DNS rebinding", "GET", "/v1/functions", "", map[string]string{"Host": "evil.example:" + port, "Authorization": tok}, 403, "host"},
		{"trailing JSON", "POST", "/v1/instances", `{"function":"echo-tcp"}{"function":"echo-grpc"}`,
			map[string]string{"Content-Type": "application/json", "Authorization": tok}, 400, "nothing after it"},
		{"legitimate", "GET", "/v1/functions", "", map[string]string{"Authorization": tok}, 200, "echo-grpc"},
	} {
		status, body := send(tc.method, tc.path, tc.body, tc.header)
		if status != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, status, body, tc.status, tc.contains)
		}
		if tc.status == 401 && strings.Contains(body, "echo") {
			t.Errorf("%s: the refusal says more than unauthenticated: %s", tc.name, body)
		}
	}
	// Trailing JSON created nothing: each function still has its one
	// instance.
	for _, fn := range []string{"echo-tcp", "echo-grpc"} {
		if n := len(instances(t, d, fn)); n != 1 {
			t.Errorf("%s has %d instances, want 1", fn, n)
		}
	}

	conn, err := grpc.NewClient(d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := agentpb.NewAgentClient(conn)
	_, err = c.CreateInstance(testCtx(t), &agentpb.CreateInstanceRequest{Function: "echo-tcp"})
	if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated || st.Message() != "unauthenticated" {
		t.Errorf("gRPC without a token: %v, want UNAUTHENTICATED and nothing else", err)
	}
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "authorization", tok)
	if res, err := c.Invoke(ctx, &agentpb.InvokeRequest{Function: "echo-grpc", Payload: []byte("g")}); err != nil || !strings.HasSuffix(string(res.Payload), "|g") {
		t.Errorf("gRPC with the token: %v, %v", res, err)
	}

	ok, failed, errs := stopLegit()
	t.Logf("legitimate invocations during the attacks: %d ok, %d failed", ok, failed)
	if failed > 0 || ok == 0 {
		t.Errorf("legitimate invocations: %d ok, %d failed: %v", ok, failed, errs)
	}
	http.DefaultClient.CloseIdleConnections()
}

// A second spearlet on the same state directory fails at once; one on
// another state directory but the same API port fails before it starts
// any instance.
func TestSecondAgentFailsFast(t *testing.T) {
	d := startDaemon(t, "--config", writeConfig(t, attackConfig))
	run := func(args ...string) string {
		cmd := execCommand(t, append([]string{"serve", "--config", writeConfig(t, attackConfig), "--channels-socket-dir", t.TempDir()}, args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("second agent %v started:\n%s", args, out)
		}
		return string(out)
	}
	out := run("--state-dir", d.stateDir, "--api-http-addr", "127.0.0.1:0", "--api-grpc-addr", "127.0.0.1:0")
	if !strings.Contains(out, "locked by pid "+strconv.Itoa(d.cmd.Process.Pid)) {
		t.Errorf("same state directory:\n%s\nwant it locked by %d", out, d.cmd.Process.Pid)
	}
	out = run("--state-dir", t.TempDir()+"/state", "--api-http-addr", d.addr, "--api-grpc-addr", "127.0.0.1:0")
	if !strings.Contains(out, "address already in use") || strings.Contains(out, "instance started") || strings.Contains(out, "channel created") {
		t.Errorf("same API port:\n%s\nwant it to fail before it starts anything", out)
	}
}
