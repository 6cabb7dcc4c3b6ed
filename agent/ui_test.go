package agent

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spear-go/spear/stats"
)

func TestUIPageAndAssets(t *testing.T) {
	_, _, srv := newTestServer(t, testConfig(nil))
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(srv.URL + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q, want a redirect to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	for path, want := range map[string]string{"/ui/": `<script src="app.js"`, "/ui/app.js": "readEvents", "/ui/style.css": "--p99"} {
		resp, body := do(t, "GET", srv.URL+path, nil)
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body without %q", path, resp.StatusCode, want)
		}
		// Same origin only: no scripts, styles or connections from elsewhere.
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self'") ||
			!strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	if resp, _ := do(t, "GET", srv.URL+"/ui/nope.js", nil); resp.StatusCode != 404 {
		t.Errorf("GET /ui/nope.js: %d", resp.StatusCode)
	}
}

// readSnapshot reads the next snapshot event.
func readSnapshot(t *testing.T, br *bufio.Reader) dashboardSnapshot {
	t.Helper()
	var event, data string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		case line == "" && data != "":
			if event != "snapshot" {
				t.Fatalf("event %q, want snapshot", event)
			}
			var s dashboardSnapshot
			if err := json.Unmarshal([]byte(data), &s); err != nil {
				t.Fatalf("snapshot %s: %v", data, err)
			}
			return s
		}
	}
}

func TestUIEvents(t *testing.T) {
	a, _, srv := newTestServer(t, testConfig(func(f *FunctionConfig) { f.MinInstances = 1 }))
	eventually(t, "an instance", func() bool { return a.Functions()[0].Ready == 1 })
	resp := send(t, "GET", srv.URL+"/ui/events", nil)
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	first := readSnapshot(t, br)
	if len(first.Functions) != 1 || first.Functions[0].Name != "fn" || first.Functions[0].Health != HealthServing ||
		len(first.Instances) != 1 || !first.Ready {
		t.Fatalf("first snapshot %+v", first)
	}
	for range 3 {
		if _, err := invoke(t, a, "", "x"); err != nil {
			t.Fatal(err)
		}
	}
	next := readSnapshot(t, br)
	if w := next.Functions[0].Window; w.Count != 3 || w.P50 <= 0 || w.P99 < w.P50 || next.Functions[0].Invocations != 3 {
		t.Errorf("window after 3 invocations: %+v, invocations %d", w, next.Functions[0].Invocations)
	}
	if n := next.Instances[0].Stats.Latency.Count; n != 3 {
		t.Errorf("instance requests %d, want 3", n)
	}
}

func TestLatencyWindow(t *testing.T) {
	c := stats.New()
	for range 90 {
		c.Latency(time.Millisecond)
	}
	before := c.LatencyHistogram(windowBounds)
	for range 98 {
		c.Latency(2 * time.Millisecond)
	}
	c.Latency(time.Second)
	c.Latency(time.Second)
	w := window(c.LatencyHistogram(windowBounds), before.Cumulative, before.Count)
	// 100 new samples: the median near 2ms, the 99th percentile near 1s;
	// the 90 older ones at 1ms do not count.
	if w.Count != 100 || w.P50 < 2 || w.P50 > 2.6 || w.P99 < 1000 || w.P99 > 1300 {
		t.Errorf("window %+v, want 100 samples, p50 about 2ms, p99 about 1s", w)
	}
	if w := window(c.LatencyHistogram(windowBounds), c.LatencyHistogram(windowBounds).Cumulative, 190); w.Count != 0 || w.P50 != 0 {
		t.Errorf("empty window %+v", w)
	}
}
