package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spear-go/spear/client"
)

// browser returns the path of a Chromium (Debian's chromium package,
// which .ci/run installs). Without one the dashboard test skips, unless
// SPEAR_REQUIRE_BROWSER is set (as .ci/run sets it).
func browser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SPEAR_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium in PATH, and SPEAR_REQUIRE_BROWSER is set (apt-get install chromium)")
	}
	t.Skip("no chromium in PATH (apt-get install chromium)")
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile and returns
// a tab's context; it is closed when the test ends.
func newBrowser(t *testing.T, exe string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(testCtx(t), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx) // closes the browser and waits for it
		cancel()
		cancelAlloc()
	})
	return ctx
}

// TestDashboardInBrowser loads /ui of a running daemon (the default
// config: echo, a process function, and wasm-echo) in headless Chromium
// and checks that the page shows the functions with their health and the
// instances, that invocations show in the instance's counter, and that
// the log pane follows the chosen instance's output. It saves screenshots
// in the test's artifact directory (go test -artifacts keeps them).
func TestDashboardInBrowser(t *testing.T) {
	exe := browser(t)
	d := startDaemon(t)
	ctx := newBrowser(t, exe)
	// Opened as the docs say: with the token once, which the dashboard
	// keeps in a cookie.
	url := "http://" + d.addr + "/ui/?token=" + d.token(t)

	if err := chromedp.Do(ctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(`#functions tr[data-function="echo"]`),
		chromedp.WaitVisible(`#functions tr[data-function="wasm-echo"]`),
		chromedp.WaitVisible(`#instances tr[data-function="echo"]`),
	); err != nil {
		t.Fatalf("the dashboard did not show the functions and instances: %v", err)
	}
	str := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return v
	}
	// Both functions, healthy (each has its min_instances, 1, running).
	eventually(t, "both functions serving", func() bool {
		return str(`[...document.querySelectorAll('#functions tbody tr')].map(r => r.dataset.function + '=' + r.dataset.health).join(' ')`) ==
			"echo=serving wasm-echo=serving"
	})
	if ready := str(`document.getElementById('ready').textContent`); ready != "ready" {
		t.Errorf("readiness badge %q, want ready", ready)
	}

	// The echo instance's row names it as the API does.
	list := instances(t, d, "echo")
	if len(list) != 1 {
		t.Fatalf("instances of echo: %+v", list)
	}
	id := list[0].ID
	row := `#instances tr[data-instance="` + id + `"]`
	cells, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](
		`Object.fromEntries([...document.querySelectorAll('`+row+` td')].map(td => [td.dataset.field, td.textContent]))`))
	if err != nil {
		t.Fatal(err)
	}
	if cells["id"] != id || cells["status"] != "running" || cells["where"] != strconv.Itoa(list[0].PID) || cells["transport"] != "unix" {
		t.Errorf("instance row %v, want %s running as pid %d on unix", cells, id, list[0].PID)
	}
	requests := func() int {
		n, _ := strconv.Atoi(str(`document.querySelector('` + row + ` td[data-field="requests"]').textContent`))
		return n
	}
	before := requests()

	// Invocations show up in the counters.
	const calls = 5
	for i := range calls {
		if _, err := d.client.Invoke(testCtx(t), "echo", []byte("hi "+strconv.Itoa(i)), client.InvokeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the invocations in the instance's request counter", func() bool { return requests() >= before+calls })
	eventually(t, "the function's latency in its chart", func() bool {
		p99 := str(`document.querySelector('#functions tr[data-function="echo"] td[data-field="p99"]').textContent`)
		return p99 != "–" && p99 != ""
	})

	// The log pane follows the instance: a line it writes now appears.
	if err := chromedp.Do(ctx, chromedp.Click(row), chromedp.WaitVisible(`#logs`)); err != nil {
		t.Fatal(err)
	}
	if following := str(`document.getElementById('logs-instance').textContent`); following != id {
		t.Errorf("log pane follows %q, want %s", following, id)
	}
	const marker = "hello from the dashboard test"
	if _, err := d.client.Invoke(testCtx(t), "echo", []byte(marker), client.InvokeOptions{Method: "log"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the instance's new output line in the log pane", func() bool {
		return strings.Contains(str(`document.getElementById('logs-lines').textContent`), marker)
	})

	// Keep traffic going for a few snapshots, so the chart has a line.
	for i := range 30 {
		_, _ = d.client.Invoke(testCtx(t), "echo", []byte("chart"), client.InvokeOptions{})
		_, _ = d.client.Invoke(testCtx(t), "wasm-echo", []byte("chart"), client.InvokeOptions{})
		if i%10 == 9 {
			time.Sleep(time.Second) // the page's snapshots come once a second
		}
	}
	time.Sleep(1500 * time.Millisecond)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: a PNG
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), "dashboard.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))
}

// TestDashboardShowsPoolState loads /ui of a daemon with a function whose
// starts fail and one with an instance that outlier ejection took out,
// and checks that the page shows the pool state as the API has it: the
// crash loop with its reason, next retry and last error, the ejected
// count, and the ejected instance's standing and why.
func TestDashboardShowsPoolState(t *testing.T) {
	exe := browser(t)
	d := startDaemon(t, "--config", writeConfig(t, `
functions:
  - name: echo
    runtime: process
    command: "@self"
    args: [worker]
    min_instances: 2
    max_instances: 2
    balancer: round-robin
    outlier: {consecutive_errors: 2, base_ejection: 10m}
  - name: broken
    runtime: process
    command: /bin/false
    min_instances: 1
    readiness: optional
    restart: {initial_backoff: 1m, max_backoff: 1m}
`))
	eventually(t, "two echo instances", func() bool { return len(instances(t, d, "echo")) == 2 })
	// Round robin: each instance fails twice, and the first to do so is
	// ejected; the other is then the last ready one, and stays.
	for range 4 {
		_, _ = d.client.Invoke(testCtx(t), "echo", []byte("boom"), client.InvokeOptions{Method: "fail"})
	}
	var ejected string
	for _, in := range instances(t, d, "echo") {
		if in.Health == "ejected" {
			ejected = in.ID
		}
	}
	if ejected == "" {
		t.Fatalf("no echo instance ejected: %+v", instances(t, d, "echo"))
	}

	ctx := newBrowser(t, exe)
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('`+sel+`') || {}).textContent || ""`))
		if err != nil {
			t.Fatalf("evaluate %s: %v", sel, err)
		}
		return v
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate("http://"+d.addr+"/ui/?token="+d.token(t)),
		chromedp.WaitVisible(`#functions tr[data-function="broken"][data-health="crash_looping"]`),
		chromedp.WaitVisible(`#functions tr[data-function="echo"][data-health="degraded"]`),
		chromedp.WaitVisible(`#instances tr[data-instance="`+ejected+`"]`),
	); err != nil {
		t.Fatalf("the dashboard did not show the crash loop and the ejection: %v", err)
	}
	broken := `#functions tr[data-function="broken"] td[data-field=`
	if h := text(broken + `"health"]`); !strings.Contains(h, "starts failed in a row") || !strings.Contains(h, "next retry") {
		t.Errorf("broken's health cell %q, want the crash loop and its next retry", h)
	}
	if e := text(broken + `"last_error"]`); !strings.Contains(e, "start failed: ") || !strings.Contains(e, "/bin/false") && !strings.Contains(e, "exit status 1") {
		t.Errorf("broken's last error %q, want the failed start", e)
	}
	echo := `#functions tr[data-function="echo"] td[data-field=`
	if h := text(echo + `"health"]`); !strings.Contains(h, ejected+" ejected") {
		t.Errorf("echo's health cell %q, want the ejected instance named", h)
	}
	if n := text(echo + `"instances"]`); n != "1/21 ejected" {
		t.Errorf("echo's instances cell %q, want 1/2 and 1 ejected", n)
	}
	if h := text(`#instances tr[data-instance="` + ejected + `"] td[data-field="health"]`); !strings.HasPrefix(h, "ejected") ||
		!strings.Contains(h, "2 instance-side failures in a row") {
		t.Errorf("the ejected instance's health cell %q", h)
	}
}
