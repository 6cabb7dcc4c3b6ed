package main

// The README, run as a new user would run it: its shell blocks in order,
// against the spearlet this test built, in a temporary home directory,
// with its Go blocks written where it says. A README that drifts from the
// code fails here.
//
// A block is run as one bash script ("set -e", pipefail), in the
// directory the previous block ended in. An HTML comment right before a
// block says what else to do with it, so that nothing is skipped
// silently:
//
//	<!-- readme-test: background (why) -->  run it in the background, as
//	    in another terminal, and go on once the daemon answers; a daemon
//	    running in the background already is stopped first, as Ctrl-C
//	    would, and must exit cleanly
//	<!-- readme-test: expect REGEXP -->     its output (stdout and
//	    stderr, each command's ending in a newline) must match
//	<!-- readme-test: file PATH -->         write the block's text to
//	    PATH instead of running it (Go and YAML blocks)
//	<!-- readme-test: skip (why) -->        do not run it
//
// Shell and Go blocks with no annotation are run (Go blocks must say
// where they go); other languages are left alone.
//
// What the test changes from a user's machine: "go run ./cmd/spearlet" is
// the built binary (the same code, without building it again for every
// command); HOME, the XDG directories and GOBIN are in the temporary
// directory, whose "spear" is the checkout; and the daemon listens on a
// free port instead of 7480, which the client commands (through
// $SPEARLET_ADDR) and curl (its URL rewritten) follow. With
// -readme.transcript=FILE the test keeps the default ports instead and
// writes what it ran, and what came out, to FILE: that is how
// docs/first-five-minutes.md is made.

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var transcriptFile = flag.String("readme.transcript", "", "write a transcript of the README's run to this file (the daemon on its default ports)")

// block is a fenced code block of the README and its annotations.
type block struct {
	line       int    // of the opening fence
	lang       string // after the fence
	text       string
	background bool
	skip       bool
	file       string
	expect     []*regexp.Regexp
}

var (
	fence      = regexp.MustCompile("^```([a-z]*)\\s*$")
	annotation = regexp.MustCompile(`^<!-- readme-test: (background|skip|expect|file)\b\s*(.*?)\s*-->$`)
)

// readmeBlocks parses the README's fenced blocks and their annotations.
func readmeBlocks(t *testing.T, path string) []block {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out     []block
		pending block
		cur     *block
		text    strings.Builder
	)
	for i, line := range strings.Split(string(b), "\n") {
		if cur != nil {
			if strings.TrimSpace(line) == "```" {
				cur.text = text.String()
				out = append(out, *cur)
				cur, pending = nil, block{}
				continue
			}
			text.WriteString(line + "\n")
			continue
		}
		if m := annotation.FindStringSubmatch(line); m != nil {
			switch m[1] {
			case "background":
				pending.background = true
			case "skip":
				pending.skip = true
			case "file":
				pending.file = m[2]
			case "expect":
				re, err := regexp.Compile(m[2])
				if err != nil {
					t.Fatalf("README.md:%d: %v", i+1, err)
				}
				pending.expect = append(pending.expect, re)
			}
			continue
		}
		if m := fence.FindStringSubmatch(line); m != nil {
			cur = &pending
			cur.line, cur.lang = i+1, m[1]
			text.Reset()
			continue
		}
		if strings.TrimSpace(line) != "" && strings.HasPrefix(line, "<!-- readme-test") {
			t.Fatalf("README.md:%d: an annotation the test does not know: %s", i+1, line)
		}
		if strings.TrimSpace(line) != "" {
			pending = block{} // an annotation belongs to the block right after it
		}
	}
	return out
}

// readmeRun is the state of one run of the README.
type readmeRun struct {
	t       *testing.T
	tmp     string // the temporary directory, shown as ~/.. in the transcript
	env     []string
	cwd     string
	port    string // the HTTP API's, where the README says 7480
	bg      *exec.Cmd
	bgLog   string // the background block's output
	bgDone  chan error
	started time.Time
	script  strings.Builder // the transcript
}

func TestREADME(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	root := repoRoot(t)
	blocks := readmeBlocks(t, filepath.Join(root, "README.md"))
	tmp := t.TempDir()
	for _, d := range []string{"home", "bin", "state", "cache", "config"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	clone := filepath.Join(tmp, "spear")
	if err := os.Symlink(root, clone); err != nil {
		t.Fatal(err)
	}
	r := &readmeRun{t: t, tmp: tmp, cwd: clone, port: "7480", started: time.Now()}
	goEnv := func(name string) string {
		out, err := exec.Command("go", "env", name).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	r.env = append(os.Environ(),
		"HOME="+filepath.Join(tmp, "home"),
		// The daemon's state (API socket, token) where a new user's is, the
		// path the README's curl names, also when the test runs as root
		// (whose default, /var/lib/spearlet, is the machine's).
		"SPEARLET_STATE_DIR="+filepath.Join(tmp, "home", ".local", "state", "spearlet"),
		"XDG_STATE_HOME="+filepath.Join(tmp, "home", ".local", "state"),
		"XDG_CACHE_HOME="+filepath.Join(tmp, "cache"),
		"XDG_CONFIG_HOME="+filepath.Join(tmp, "config"),
		// The module and build caches stay where they are.
		"GOPATH="+goEnv("GOPATH"), "GOMODCACHE="+goEnv("GOMODCACHE"), "GOCACHE="+goEnv("GOCACHE"),
		"GOBIN="+filepath.Join(tmp, "bin"),
		"PATH="+filepath.Join(tmp, "bin")+":"+filepath.Dir(binary)+":"+os.Getenv("PATH"),
		"SPEARLET_CONFIG=",
	)
	if *transcriptFile == "" {
		r.port = freePort(t)
		r.env = append(r.env, "SPEARLET_HTTP_ADDR=127.0.0.1:"+r.port, "SPEARLET_API_GRPC_ADDR=127.0.0.1:0", "SPEARLET_ADDR=127.0.0.1:"+r.port)
	}
	defer r.stopBackground()

	ran := 0
	for _, b := range blocks {
		where := fmt.Sprintf("README.md:%d", b.line)
		switch {
		case b.skip:
			t.Logf("%s: skipped, as its annotation says", where)
		case b.file != "":
			path := filepath.Join(r.cwd, b.file)
			if err := os.WriteFile(path, []byte(b.text), 0o644); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			r.note("# %s, as the README shows it\n", b.file)
		case b.lang == "go":
			t.Fatalf("%s: a Go block needs a file annotation (<!-- readme-test: file PATH -->)", where)
		case b.lang != "sh" && b.lang != "bash":
			continue
		case b.background:
			r.background(where, b.text)
			ran++
		default:
			out := r.run(where, b.text)
			for _, re := range b.expect {
				if !re.MatchString(out) {
					t.Errorf("%s: the output does not match %q:\n%s", where, re, out)
				}
			}
			ran++
		}
	}
	if ran < 6 {
		t.Errorf("only %d blocks ran: the README lost its commands, or the test its way of finding them", ran)
	}
	r.stopBackground()
	if *transcriptFile != "" {
		if err := os.WriteFile(*transcriptFile, []byte(r.transcript()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// prelude makes the shell a new user's, but for what the test changes
// (see the package comment above).
func (r *readmeRun) prelude() string {
	s := `set -eo pipefail
go() { if [ "$1" = run ] && [ "$2" = ./cmd/spearlet ]; then shift 2; command spearlet "$@"; else command go "$@"; fi; }
`
	if r.port != "7480" {
		s += `curl() { local a=(); for x in "$@"; do a+=("${x//127.0.0.1:7480/127.0.0.1:` + r.port + `}"); done; command curl "${a[@]}"; }
`
	}
	return s
}

// marker ends each command's output in run's script.
const marker = "\x1e"

// run runs a block and returns its output, each command's ending in a
// newline; it fails the test when a command fails.
func (r *readmeRun) run(where, text string) string {
	r.t.Helper()
	state := filepath.Join(r.t.TempDir(), "pwd")
	var sc strings.Builder
	sc.WriteString(r.prelude())
	fmt.Fprintf(&sc, "cd %q\n", r.cwd)
	for _, c := range commands(text) {
		fmt.Fprintf(&sc, "printf '%s$ %%s\\n' %s\n%s\nprintf '%s'\n", marker, shellQuote(c), c, marker)
	}
	fmt.Fprintf(&sc, "pwd > %q\n", state)
	stamp := r.stamp()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", sc.String())
	cmd.Env = r.env
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	shown, out := split(buf.String())
	r.script.WriteString(stamp + r.home(shown))
	if err != nil {
		r.t.Fatalf("%s: %v\n%s", where, err, shown)
	}
	if b, err := os.ReadFile(state); err == nil {
		r.cwd = strings.TrimSpace(string(b))
	}
	return out
}

// split turns run's raw output into the transcript ("$ command" lines
// and the output) and the output alone, each command's ending in a
// newline.
func split(raw string) (shown, out string) {
	var s, o strings.Builder
	for _, seg := range strings.Split(raw, marker) {
		if rest, ok := strings.CutPrefix(seg, "$ "); ok {
			cmd, output, _ := strings.Cut(rest, "\n")
			s.WriteString("$ " + cmd + "\n")
			seg = output
		}
		if seg != "" && !strings.HasSuffix(seg, "\n") {
			seg += "\n"
		}
		s.WriteString(seg)
		o.WriteString(seg)
	}
	return s.String(), o.String()
}

// background starts a block in the background, after stopping the one
// running, and waits until the daemon answers.
func (r *readmeRun) background(where, text string) {
	r.t.Helper()
	r.stopBackground()
	stamp := r.stamp()
	cmds := commands(text)
	sc := r.prelude() + fmt.Sprintf("cd %q\n", r.cwd) + strings.Join(cmds, "\n") + "\n"
	cmd := exec.Command("bash", "-c", sc)
	cmd.Env = r.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, as a terminal's job
	r.bgLog = filepath.Join(r.t.TempDir(), "background.log")
	log, err := os.Create(r.bgLog)
	if err != nil {
		r.t.Fatal(err)
	}
	defer log.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("%s: %v", where, err)
	}
	r.bg, r.bgDone = cmd, make(chan error, 1)
	go func() { r.bgDone <- cmd.Wait() }()
	deadline := time.Now().Add(testTimeout)
	for {
		health := exec.Command(binary, "health", "--addr", "127.0.0.1:"+r.port)
		health.Env = r.env
		if health.Run() == nil {
			break
		}
		select {
		case err := <-r.bgDone:
			r.bg = nil
			r.t.Fatalf("%s: exited before it served: %v\n%s", where, err, r.bgOutput())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: the daemon did not answer\n%s", where, r.bgOutput())
		}
	}
	for i, c := range cmds {
		if j := strings.Index(c, "  #"); j > 0 {
			cmds[i] = strings.TrimSpace(c[:j])
		}
	}
	r.script.WriteString(stamp + r.home(fmt.Sprintf("$ %s &    # in another terminal\n%s", strings.Join(cmds, "; "), firstLines(r.bgOutput(), 3))))
}

// stopBackground stops the background block as Ctrl-C would, and checks
// that it ended cleanly.
func (r *readmeRun) stopBackground() {
	if r.bg == nil {
		return
	}
	r.t.Helper()
	bg := r.bg
	r.bg = nil
	_ = syscall.Kill(-bg.Process.Pid, syscall.SIGINT)
	select {
	case err := <-r.bgDone:
		if err != nil {
			r.t.Errorf("the background daemon did not exit cleanly on Ctrl-C: %v\n%s", err, r.bgOutput())
		}
	case <-time.After(testTimeout):
		_ = syscall.Kill(-bg.Process.Pid, syscall.SIGKILL)
		<-r.bgDone
		r.t.Errorf("the background daemon did not stop on Ctrl-C\n%s", r.bgOutput())
	}
	r.note("^C    # the daemon in the other terminal stops\n")
}

// note adds to the transcript, stamped with the time since the start.
func (r *readmeRun) note(format string, args ...any) {
	r.script.WriteString(r.stamp() + r.home(fmt.Sprintf(format, args...)))
}

// stamp is the time since the start, as the transcript shows it.
func (r *readmeRun) stamp() string {
	el := time.Since(r.started).Round(time.Second)
	return fmt.Sprintf("[%d:%02d] ", int(el.Minutes()), int(el.Seconds())%60)
}

// home shows the temporary home directory as "~".
func (r *readmeRun) home(s string) string {
	s = strings.ReplaceAll(s, filepath.Join(r.tmp, "home"), "~")
	return strings.ReplaceAll(s, filepath.Join(r.tmp, "spear"), "~/../spear")
}

func (r *readmeRun) transcript() string {
	return `# The first five minutes

What a new user sees, following the README from a clone: serve the default
functions, invoke them, scaffold a Go function, serve it and invoke it, and
reload a changed configuration. It was captured from a real run, by the
README's own test:

    go test ./cmd/spearlet -run TestREADME -readme.transcript=$PWD/docs/first-five-minutes.md

Each step is stamped with the minutes and seconds since the start. Instance
ids, process ids and times are that run's; HOME (shown as ~) was a fresh
temporary directory, with the checkout beside it.

` + "```text\n" + r.script.String() + "```\n"
}

// commands splits a block into its commands: lines, with continuations
// joined, comments and blank lines left out.
func commands(text string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if cur.Len() == 0 && (strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#")) {
			continue
		}
		if l, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(l)
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func firstLines(s string, n int) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	var b strings.Builder
	for i := 0; i < n && sc.Scan(); i++ {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// bgOutput returns what the background block has written so far.
func (r *readmeRun) bgOutput() string {
	b, _ := os.ReadFile(r.bgLog)
	return string(b)
}
