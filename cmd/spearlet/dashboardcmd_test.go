package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spear-go/spear/client"
)

// "spearlet dashboard" prints the address that logs a browser in: a GET
// of it, with a cookie jar as a browser has, is sent on to /ui/ without
// the token, and /ui/ then answers with the page. --open hands the
// browser a private file, never the token on a command line; a daemon
// that does not answer is exit 3.
func TestDashboardCommand(t *testing.T) {
	d := startDaemon(t)
	env := []string{client.EnvAddr + "=", client.EnvToken + "=", client.EnvStateDir + "=" + d.stateDir}
	code, stdout, stderr := run(t, env, "dashboard", "--addr", d.addr)
	link := strings.TrimSpace(stdout)
	if want := "http://" + d.addr + "/ui/?token=" + d.token(t); code != 0 || link != want {
		t.Fatalf("dashboard: exit %d, %q (stderr %s); want %q", code, link, stderr, want)
	}

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/ui/" {
		t.Fatalf("GET of the printed address: %s to %q; want 303 to /ui/", resp.Status, loc)
	}
	next, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = hc.Get(next.ResolveReference(&url.URL{Path: "/ui/"}).String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /ui/ with the cookie: %s %s; want 200 text/html", resp.Status, resp.Header.Get("Content-Type"))
	}

	// -o json carries the same address.
	_, stdout, _ = run(t, env, "dashboard", "--addr", d.addr, "-o", "json")
	var info struct{ URL string }
	if err := json.Unmarshal([]byte(stdout), &info); err != nil || info.URL != link {
		t.Errorf("-o json: %q (%v); want the url %q", stdout, err, link)
	}

	// --open: the opener gets a file only this user may read, which
	// sends the browser on; the token is in no command line.
	bin, cache := t.TempDir(), t.TempDir()
	argFile := filepath.Join(t.TempDir(), "arg")
	script := "#!/bin/sh\nprintf '%s' \"$*\" > " + argFile + ".tmp && mv " + argFile + ".tmp " + argFile + "\n"
	if err := os.WriteFile(filepath.Join(bin, "xdg-open"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	openEnv := append(env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "XDG_CACHE_HOME="+cache)
	code, stdout, stderr = run(t, openEnv, "dashboard", "--addr", d.addr, "--open")
	if code != 0 || strings.TrimSpace(stdout) != link {
		t.Fatalf("--open: exit %d, %q (stderr %s)", code, stdout, stderr)
	}
	var arg []byte
	eventually(t, "xdg-open to run", func() bool { arg, err = os.ReadFile(argFile); return err == nil })
	page := filepath.Join(cache, "spearlet", "dashboard.html")
	if string(arg) != "file://"+page || strings.Contains(string(arg), d.token(t)) {
		t.Errorf("xdg-open was given %q; want file://%s", arg, page)
	}
	if fi, err := os.Stat(page); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the page: %v, %v; want mode 0600", fi, err)
	}
	if b, _ := os.ReadFile(page); !strings.Contains(string(b), `content="0;url=`+link+`"`) {
		t.Errorf("the page does not send the browser to the address:\n%s", b)
	}

	// No opener: it says so, and the address is still printed.
	noEnv := append(env, "PATH="+t.TempDir(), "XDG_CACHE_HOME="+cache)
	code, stdout, stderr = run(t, noEnv, "dashboard", "--addr", d.addr, "--open")
	if code != 0 || strings.TrimSpace(stdout) != link || !strings.Contains(stderr, "no xdg-open") {
		t.Errorf("--open without xdg-open: exit %d, %q, stderr %q; want 0, the address, and why nothing opened", code, stdout, stderr)
	}

	// The unix socket: a browser cannot use it, and the error says what to pass.
	code, _, stderr = run(t, env, "dashboard", "--addr", "unix:"+filepath.Join(d.stateDir, "api.sock"))
	if code != 1 || !strings.Contains(stderr, "TCP API address") || !strings.Contains(stderr, "--addr") {
		t.Errorf("over the socket: exit %d, %q; want 1 and how to give the TCP address", code, stderr)
	}

	// Nothing listening: exit 3.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	code, stdout, stderr = run(t, env, "dashboard", "--addr", closed)
	if code != 3 || stdout != "" || !strings.Contains(stderr, "cannot reach") {
		t.Errorf("unreachable: exit %d, stdout %q, stderr %q; want 3 and no address", code, stdout, stderr)
	}
}
