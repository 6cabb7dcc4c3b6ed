package main

// End-to-end tests: they build the real spearlet binary once and run it as
// a daemon, talking to it through the CLI, the client package and plain
// HTTP. They take most of a minute, and -short skips them.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/client"
	"github.com/spear-go/spear/internal/kubetest"
	"github.com/spear-go/spear/proto/agentpb"
)

// testTimeout bounds every wait: generous for a loaded machine.
const testTimeout = 90 * time.Second

var binary string // the built spearlet

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test skips itself; no binary to build
	}
	dir, err := os.MkdirTemp("", "spearlet-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "spearlet")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build spearlet: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := kubetest.RunTests(m, func() {
		os.RemoveAll(dir)
		http.DefaultClient.CloseIdleConnections()
	})
	os.Exit(code)
}

// execCommand is the built spearlet with args, with no config from the
// environment. Every test that runs the binary starts it here (or in
// startDaemonIn), so each skips with -short, which builds no binary.
func execCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	cmd := exec.CommandContext(testCtx(t), binary, args...)
	cmd.Env = append(os.Environ(), "SPEARLET_CONFIG=")
	return cmd
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// daemon is a running "spearlet serve".
type daemon struct {
	cmd       *exec.Cmd
	addr      string // HTTP API
	grpcAddr  string // gRPC API
	socketDir string
	stateDir  string
	client    *client.Client
	exited    chan struct{}
	exitErr   error
	mu        sync.Mutex
	log       bytes.Buffer // its stderr
}

// servingLine finds the API's addresses in the daemon's log, text or
// JSON (--log-format json).
var servingLine = regexp.MustCompile(`msg="spearlet serving" http=(\S+) grpc=(\S+)|"msg":"spearlet serving","http":"([^"]+)","grpc":"([^"]+)"`)

// startDaemon runs "spearlet serve" on free ports with a private socket
// directory, plus args, and waits until it serves.
func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	return startDaemonEnv(t, nil, args...)
}

// startDaemonEnv is startDaemon with env added to the environment.
func startDaemonEnv(t *testing.T, env []string, args ...string) *daemon {
	t.Helper()
	return startDaemonIn(t, t.TempDir(), filepath.Join(t.TempDir(), "state"), env, args...)
}

// startDaemonIn is startDaemonEnv with the given socket and state
// directories, as a restarted agent would have.
func startDaemonIn(t *testing.T, socketDir, stateDir string, env []string, args ...string) *daemon {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	d := &daemon{socketDir: socketDir, stateDir: stateDir, exited: make(chan struct{})}
	args = append([]string{"serve", "--api-http-addr", "127.0.0.1:0", "--api-grpc-addr", "127.0.0.1:0",
		"--channels-socket-dir", d.socketDir, "--state-dir", d.stateDir}, args...)
	d.cmd = exec.Command(binary, args...)
	d.cmd.Env = append(append(os.Environ(), "SPEARLET_CONFIG="), env...) // no config from the environment
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan []string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			d.log.WriteString(line + "\n")
			d.mu.Unlock()
			if m := servingLine.FindStringSubmatch(line); m != nil {
				if m[1] == "" {
					m = m[2:] // the JSON form's groups
				}
				ready <- m[1:3]
			}
		}
	}()
	go func() {
		<-copied
		d.exitErr = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(testTimeout):
			d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.logText())
		}
	})
	select {
	case addrs := <-ready:
		d.addr, d.grpcAddr = addrs[0], addrs[1]
	case <-d.exited:
		t.Fatalf("daemon exited before serving: %v\n%s", d.exitErr, d.logText())
	case <-time.After(testTimeout):
		t.Fatalf("daemon did not start serving\n%s", d.logText())
	}
	d.client = &client.Client{Addr: d.addr, StateDir: d.stateDir}
	return d
}

func (d *daemon) signal(sig syscall.Signal) {
	select {
	case <-d.exited:
	default:
		_ = d.cmd.Process.Signal(sig)
	}
}

func (d *daemon) logText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// wait waits for the daemon to exit and returns its exit error.
func (d *daemon) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-d.exited:
		return d.exitErr
	case <-testCtx(t).Done():
		t.Fatal("daemon did not exit")
		return nil
	}
}

// token is the daemon's API token, from its state directory.
func (d *daemon) token(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.stateDir, api.TokenName))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// cli runs the spearlet CLI against d, which it finds by its state
// directory (the socket there), and returns its stdout.
func (d *daemon) cli(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := execCommand(t, args...)
	cmd.Env = append(cmd.Env, client.EnvAddr+"=", client.EnvStateDir+"="+d.stateDir)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, stderr.String())
	}
	return stdout.String(), err
}

// writeConfig writes a config file and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spearlet.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// eventually polls cond until it holds or the test deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx := testCtx(t)
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func instances(t *testing.T, d *daemon, function string) []api.Instance {
	t.Helper()
	list, err := d.client.Instances(testCtx(t), function)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

var idPrefix = regexp.MustCompile(`^(process|wasm):([a-z0-9.-]+)\|`)

func TestServeDefaultConfig(t *testing.T) {
	d := startDaemon(t)

	out, err := d.cli(t, "", "invoke", "echo", "hello")
	if err != nil || !regexp.MustCompile(`^process:echo-[0-9a-f]{8}\|hello$`).MatchString(out) {
		t.Errorf("invoke echo: %q, %v", out, err)
	}
	out, err = d.cli(t, "", "invoke", "wasm-echo", "hello")
	if err != nil || !regexp.MustCompile(`^wasm:wasm-echo-[0-9a-f]{8}\|hello$`).MatchString(out) {
		t.Errorf("invoke wasm-echo: %q, %v", out, err)
	}
	out, err = d.cli(t, "from stdin", "invoke", "echo", "--method", "upper", "-f", "-")
	if err != nil || out != "FROM STDIN" {
		t.Errorf("invoke -f -: %q, %v", out, err)
	}
	out, err = d.cli(t, "piped", "invoke", "echo", "--method", "upper")
	if err != nil || out != "PIPED" {
		t.Errorf("invoke with piped stdin: %q, %v", out, err)
	}
	out, err = d.cli(t, "", "invoke", "echo", "--method", "stream", "--stream", "one two three four")
	if err != nil || out != "one two three four" {
		t.Errorf("invoke --stream: %q, %v", out, err)
	}
	_, err = d.cli(t, "", "invoke", "nope", "x")
	if err == nil || !strings.Contains(err.Error(), "not_found") || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("invoke nope: %v, want a not_found error naming it", err)
	}
	_, err = d.cli(t, "", "invoke", "echo", "--method", "fail", "boom")
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("invoke --method fail: %v", err)
	}

	// Plain HTTP, with the token.
	req, _ := http.NewRequest("POST", "http://"+d.addr+"/v1/functions/wasm-echo/invoke", strings.NewReader("over http"))
	req.Header.Set("Authorization", "Bearer "+d.token(t))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != resp.Header.Get(api.HeaderInstance)+"|over http" {
		t.Errorf("HTTP invoke: %d %q", resp.StatusCode, body)
	}

	out, err = d.cli(t, "", "functions")
	if err != nil || !regexp.MustCompile(`(?m)^echo\s+process\s`).MatchString(out) || !regexp.MustCompile(`(?m)^wasm-echo\s+wasm\s`).MatchString(out) {
		t.Errorf("functions:\n%s%v", out, err)
	}
	out, err = d.cli(t, "", "instances", "-o", "json")
	if err != nil || !strings.Contains(out, `"status": "running"`) {
		t.Errorf("instances -o json:\n%s%v", out, err)
	}
	in, err := d.client.CreateInstance(testCtx(t), "echo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.cli(t, "", "instances", "logs", in.ID, "--lines", "5"); err != nil {
		t.Errorf("instances logs: %v", err)
	}
	if _, err := d.cli(t, "", "instances", "delete", in.ID); err != nil {
		t.Errorf("instances delete: %v", err)
	}
	for _, i := range instances(t, d, "echo") {
		if i.ID == in.ID && i.Status != "stopped" {
			t.Errorf("deleted instance is %s", i.Status)
		}
	}
	if out, err := d.cli(t, "", "version"); err != nil || !strings.HasPrefix(out, "spearlet ") {
		t.Errorf("version: %q, %v", out, err)
	}
}

// TestGRPCAPI invokes through the daemon's gRPC API and checks its health
// service.
func TestGRPCAPI(t *testing.T) {
	d := startDaemon(t)
	conn, err := grpc.NewClient(d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The gRPC API wants the token over TCP, health checks included.
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "authorization", "Bearer "+d.token(t))
	// "" is the agent's readiness: SERVING once both functions have their
	// min_instances; each function has its own service.
	hc := healthpb.NewHealthClient(conn)
	serving := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		h, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health of %q: %v", service, err)
		}
		return h.Status
	}
	eventually(t, "gRPC health SERVING", func() bool { return serving("") == healthpb.HealthCheckResponse_SERVING })
	for _, fn := range []string{"echo", "wasm-echo"} {
		if s := serving("spear.function." + fn); s != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %s: %v", fn, s)
		}
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "spear.function.nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("health of an unknown function: %v, want NotFound", err)
	}
	c := agentpb.NewAgentClient(conn)
	res, err := c.Invoke(ctx, &agentpb.InvokeRequest{Function: "echo", Payload: []byte("grpc")})
	if err != nil || string(res.Payload) != res.Instance+"|grpc" {
		t.Errorf("Invoke: %v, %v", res, err)
	}
	if _, err := c.Invoke(ctx, &agentpb.InvokeRequest{Function: "echo", Payload: make([]byte, 5<<20)}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized Invoke: %v, want ResourceExhausted", err)
	}
}

// TestScaling sends 200 concurrent invocations to a function with
// max_instances 10.
func TestScaling(t *testing.T) {
	d := startDaemon(t, "--config", writeConfig(t, fmt.Sprintf(`
functions:
  - name: scale
    runtime: process
    command: %q
    args: [worker]
    max_instances: 10
    max_concurrency: 4
`, binary)))
	const n = 200
	var wg sync.WaitGroup
	answers := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			res, err := d.client.Invoke(testCtx(t), "scale", []byte("20ms"), client.InvokeOptions{Method: "sleep", Timeout: time.Minute})
			answers[i], errs[i] = string(res.Payload), err
		})
	}
	wg.Wait()
	ids := map[string]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("invocation %d: %v", i, errs[i])
		}
		m := idPrefix.FindStringSubmatch(answers[i])
		if m == nil || m[1] != "process" || !strings.HasPrefix(m[2], "scale-") {
			t.Fatalf("invocation %d answered %q, not by a scale instance", i, answers[i])
		}
		ids[m[2]]++
	}
	if len(ids) > 10 {
		t.Errorf("%d distinct instances answered, max_instances is 10: %v", len(ids), ids)
	}
	live := 0
	for _, in := range instances(t, d, "scale") {
		if in.Status != "stopped" {
			live++
		}
	}
	if live > 10 || live < len(ids) {
		t.Errorf("%d live instances; %d answered; want at most 10", live, len(ids))
	}
	t.Logf("%d invocations answered by %d instances", n, len(ids))
}

// TestCrash kills an instance's process in the middle of an invocation.
func TestCrash(t *testing.T) {
	d := startDaemon(t, "--config", writeConfig(t, fmt.Sprintf(`
functions:
  - name: crashy
    runtime: process
    command: %q
    args: [worker]
    min_instances: 1
    max_instances: 1
    restart: {policy: on-failure, initial_backoff: 50ms}
`, binary)))
	var victim api.Instance
	eventually(t, "a running instance", func() bool {
		list := instances(t, d, "crashy")
		if len(list) == 1 && list[0].Status == "running" && list[0].PID > 0 {
			victim = list[0]
			return true
		}
		return false
	})
	failed := make(chan error, 1)
	go func() {
		_, err := d.client.Invoke(context.Background(), "crashy", []byte("60s"), client.InvokeOptions{Method: "sleep", Timeout: 2 * time.Minute})
		failed <- err
	}()
	eventually(t, "the invocation in flight", func() bool {
		list := instances(t, d, "crashy")
		return len(list) == 1 && list[0].InFlight == 1
	})
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-failed:
		var ce *client.Error
		if !errors.As(err, &ce) || ce.StatusCode != http.StatusBadGateway || ce.Code != "instance_failed" {
			t.Errorf("invocation on the killed instance: %v, want a 502 instance_failed", err)
		}
	case <-testCtx(t).Done():
		t.Fatal("the invocation on the killed instance did not fail")
	}
	eventually(t, "the killed instance stopped and a new one running", func() bool {
		var stopped, running bool
		for _, in := range instances(t, d, "crashy") {
			stopped = stopped || in.ID == victim.ID && in.Status == "stopped"
			running = running || in.ID != victim.ID && in.Status == "running"
		}
		return stopped && running
	})
	res, err := d.client.Invoke(testCtx(t), "crashy", []byte("x"), client.InvokeOptions{})
	if err != nil || strings.HasPrefix(string(res.Payload), victim.ID+"|") {
		t.Errorf("after the restart: %q, %v", res.Payload, err)
	}
	eventually(t, "no zombie children", func() bool { return len(zombies(t, d.cmd.Process.Pid)) == 0 })
}

// zombies lists the daemon's children in state Z.
func zombies(t *testing.T, parent int) []int {
	t.Helper()
	var out []int
	for _, p := range children(t, parent) {
		if p.state == "Z" {
			out = append(out, p.pid)
		}
	}
	return out
}

type proc struct {
	pid   int
	state string
}

// children lists the processes whose parent is parent, from /proc.
func children(t *testing.T, parent int) []proc {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var out []proc
	for _, dir := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(dir))
		if state, ppid, ok := procStat(pid); ok && ppid == parent {
			out = append(out, proc{pid: pid, state: state})
		}
	}
	return out
}

// procStat reads process pid's state ("R", "S", "Z"...) and parent from
// /proc; ok is false once the process is gone (reaped).
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0], ppid, true
}

// TestShutdown sends SIGTERM with invocations in flight.
func TestShutdown(t *testing.T) {
	d := startDaemon(t)
	const n = 3
	results := make(chan error, n)
	for range n {
		go func() {
			res, err := d.client.Invoke(context.Background(), "echo", []byte("2s"), client.InvokeOptions{Method: "sleep", Timeout: time.Minute})
			if err == nil && !strings.Contains(string(res.Payload), "slept 2s") {
				err = fmt.Errorf("answer %q", res.Payload)
			}
			results <- err
		}()
	}
	var pids []int
	eventually(t, "the invocations in flight", func() bool {
		inflight := 0
		pids = pids[:0]
		for _, in := range instances(t, d, "") {
			inflight += in.InFlight
			if in.PID > 0 {
				pids = append(pids, in.PID)
			}
		}
		return inflight == n
	})
	d.signal(syscall.SIGTERM)
	eventually(t, "healthz reporting the shutdown", func() bool {
		return d.client.Health(testCtx(t)) != nil
	})
	if _, err := d.client.Invoke(testCtx(t), "echo", []byte("x"), client.InvokeOptions{}); !client.IsCode(err, "shutting_down") {
		t.Errorf("invocation during the shutdown: %v, want shutting_down", err)
	}
	for range n {
		if err := <-results; err != nil {
			t.Errorf("in-flight invocation: %v, want it to finish", err)
		}
	}
	if err := d.wait(t); err != nil {
		t.Errorf("daemon exit: %v, want status 0\n%s", err, d.logText())
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("instance process %d still exists after the daemon exited (%v)", pid, err)
		}
	}
	var left []string
	filepath.WalkDir(d.socketDir, func(path string, e os.DirEntry, err error) error {
		if path != d.socketDir {
			left = append(left, path)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("left behind in the socket directory: %v", left)
	}
}

// TestWasmIsolation makes one wasm instance trap and another spin, while a
// third keeps answering.
func TestWasmIsolation(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	if _, err := d.client.Invoke(ctx, "wasm-echo", nil, client.InvokeOptions{Method: "trap"}); err == nil {
		t.Error(`"trap" succeeded`)
	}
	looped := make(chan error, 1)
	go func() {
		_, err := d.client.Invoke(ctx, "wasm-echo", nil, client.InvokeOptions{Method: "loop", Timeout: 3 * time.Second})
		looped <- err
	}()
	var spinning string
	eventually(t, `"loop" in flight`, func() bool {
		select {
		case err := <-looped:
			t.Fatalf(`"loop" ended before it was seen in flight: %v`, err)
		default:
		}
		for _, in := range instances(t, d, "wasm-echo") {
			if in.InFlight == 1 {
				spinning = in.ID
				return true
			}
		}
		return false
	})
	for i := range 5 {
		res, err := d.client.Invoke(ctx, "wasm-echo", []byte("still here"), client.InvokeOptions{})
		if err != nil {
			t.Fatalf("echo %d while another instance loops: %v", i, err)
		}
		if string(res.Payload) != res.Instance+"|still here" || res.Instance == spinning {
			t.Errorf("echo %d: %q from %s (the looping instance is %s)", i, res.Payload, res.Instance, spinning)
		}
	}
	var ce *client.Error
	if err := <-looped; !errors.As(err, &ce) || ce.StatusCode != http.StatusGatewayTimeout {
		t.Errorf(`"loop": %v, want a 504`, err)
	}
	if res, err := d.client.Invoke(ctx, "wasm-echo", []byte("after"), client.InvokeOptions{}); err != nil || !strings.HasSuffix(string(res.Payload), "|after") {
		t.Errorf("echo after the loop: %q, %v", res.Payload, err)
	}
}
