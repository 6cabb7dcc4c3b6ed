package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear/client"
)

// TestStructuredChildLogs runs the daemon with --log-format json: a
// child's JSON log line becomes a record of the daemon's log with the
// instance's attributes, its own level, message and fields, not a string
// escaped inside another record.
func TestStructuredChildLogs(t *testing.T) {
	d := startDaemon(t, "--log-format", "json")
	out, err := d.cli(t, "", "invoke", "echo", "disk is fine", "--method", "log")
	if err != nil || out != "logged" {
		t.Fatalf("invoke -m log: %q, %v", out, err)
	}
	id := instances(t, d, "echo")[0].ID
	var rec map[string]any
	eventually(t, "the child's record in the daemon's log", func() bool {
		for line := range strings.SplitSeq(d.logText(), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == "disk is fine" {
				rec = r
				return true
			}
		}
		return false
	})
	if rec["instance"] != id || rec["stream"] != "stderr" || rec["level"] != "INFO" || rec["method"] != "log" || rec["bytes"] != 12.0 {
		t.Errorf("record %v: want the child's fields (method, bytes) beside the instance's attributes", rec)
	}
	if strings.Contains(d.logText(), `\"msg\"`) {
		t.Error("a child's record was escaped inside another")
	}
	// The SDK's own logfmt lines pass through the same way.
	if !strings.Contains(d.logText(), `"msg":"connected to agent","instance":"`+id) {
		t.Errorf("no structured record of the SDK's logfmt line in:\n%s", d.logText())
	}
}

// TestLogsFollow runs "spearlet instances logs -f" from the built binary:
// it prints the instance's latest lines, then each new one, and exits 0
// when the instance stops.
func TestLogsFollow(t *testing.T) {
	d := startDaemon(t)
	if _, err := d.cli(t, "", "invoke", "echo", "first line", "-m", "log"); err != nil {
		t.Fatal(err)
	}
	id := instances(t, d, "echo")[0].ID
	cmd := execCommand(t, "instances", "logs", id, "-f", "-n", "5", "--addr", d.addr)
	cmd.Env = append(cmd.Env, client.EnvStateDir+"="+d.stateDir) // the token, over TCP
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	var wg sync.WaitGroup
	wg.Go(func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	})
	waitFor := func(want string) {
		t.Helper()
		for l := range lines {
			if strings.Contains(l, want) {
				return
			}
		}
		t.Fatalf("logs -f ended before %q", want)
	}
	waitFor("first line") // the tail
	if _, err := d.cli(t, "", "invoke", "echo", "second line", "-m", "log"); err != nil {
		t.Fatal(err)
	}
	waitFor("second line") // live
	if _, err := d.cli(t, "", "instances", "delete", id); err != nil {
		t.Fatal(err)
	}
	for range lines { // the rest, until the stream ends
	}
	wg.Wait()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("logs -f after the instance stopped: %v, want exit 0", err)
	}
}

// TestHealthCommand: "spearlet health" checks readiness, "--live"
// liveness.
func TestHealthCommand(t *testing.T) {
	d := startDaemon(t)
	eventually(t, "ready", func() bool {
		out, err := d.cli(t, "", "health")
		return err == nil && out == "ready\n"
	})
	if out, err := d.cli(t, "", "health", "--live"); err != nil || out != "live\n" {
		t.Errorf("health --live: %q, %v", out, err)
	}

	// A function that cannot start holds readiness back, and says why.
	cfg := writeConfig(t, `
functions:
  - name: broken
    runtime: process
    command: /nonexistent/spear-function
    min_instances: 1
    restart:
      initial_backoff: 10ms
      max_backoff: 50ms
`)
	b := startDaemon(t, "--config", cfg)
	eventually(t, "crash_looping", func() bool {
		fns, err := b.client.Functions(testCtx(t))
		return err == nil && fns[0].Health == "crash_looping"
	})
	_, err := b.cli(t, "", "health")
	if err == nil || !strings.Contains(err.Error(), "broken: crash_looping, 0 of min_instances 1 ready (") ||
		!strings.Contains(err.Error(), " starts failed in a row), last error: start failed: ") {
		t.Errorf("health of an agent whose function cannot start: %v", err)
	}
	if _, err := b.cli(t, "", "health", "--live"); err != nil {
		t.Errorf("health --live: %v, want alive", err)
	}
	out, err := b.cli(t, "", "functions")
	if err != nil || !strings.Contains(out, "crash_looping") || !strings.Contains(out, "/nonexistent/spear-function") {
		t.Errorf("functions table:\n%s%v", out, err)
	}
}

// TestTracesOverOTLP runs the daemon with the standard OTEL_* variables
// pointing at a collector stand-in: an invocation's spans arrive there
// over OTLP/HTTP, in one trace, with the service's name.
func TestTracesOverOTLP(t *testing.T) {
	var mu sync.Mutex
	spans := map[string]string{} // name -> trace id
	var service string
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		req := &collectorpb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(b, req); err != nil {
			t.Errorf("collector: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rs := range req.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					spans[s.GetName()] = string(s.GetTraceId())
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	d := startDaemonEnv(t, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + collector.URL,
		"OTEL_SERVICE_NAME=spearlet-e2e",
		"OTEL_BSP_SCHEDULE_DELAY=50", // export within 50ms
	})
	if _, err := d.client.Invoke(testCtx(t), "echo", []byte("traced"), client.InvokeOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the invocation's spans at the collector", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return spans["spear.invoke"] != "" && spans["spear.channel.execute"] != "" && spans["spear.pool.acquire"] != ""
	})
	mu.Lock()
	defer mu.Unlock()
	if spans["spear.channel.execute"] != spans["spear.invoke"] || spans["spear.pool.acquire"] != spans["spear.invoke"] || service != "spearlet-e2e" {
		t.Errorf("spans %q of service %q: want one trace, service spearlet-e2e", spans, service)
	}
}
