package process_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/sdk"
)

// The test binary runs as an instance when childEnv names a mode:
//
//   - echo: serves echoHandler until terminated (signal or SIGTERM);
//   - junk: like echo, but writes junk to stdout and stderr before
//     connecting (an over-long line among it) and a line per request;
//   - exit3: exits with status 3 at once;
//   - hang: never connects;
//   - stubborn: ignores SIGTERM, and keeps running after the terminate
//     signal;
//   - grandchild: like echo, after starting a `sleep 300` in its own
//     process group that shares its stdout;
//   - flaky: like echo, but a one-way message "drop" makes it disconnect,
//     and it connects again only on SIGUSR1;
//   - escape: like echo, after starting two `sleep 300`: one in a process
//     group of its own, printing "escaped-group <pid>", and one in a
//     session of its own, printing "escaped-session <pid>";
//   - attacker: like echo, and method "attack" runs the attacks of
//     attack_test.go on the target its payload describes;
//   - dial: for BenchmarkBareSpawn, connects to the unix socket at
//     SPEAR_ADDRESS, writes one byte and exits.
const childEnv = "SPEAR_PROCESS_TEST_CHILD"

// grandchildEnv, set to 1, makes stubborn start a grandchild as well.
const grandchildEnv = "SPEAR_PROCESS_TEST_GRANDCHILD"

// Lines the junk child writes before connecting.
var (
	junkOut = []string{"junk-out-1", "junk-out-2 \x00\x01 binary", "{\"type\":\"not-a-frame\"}", "junk-out-3"}
	junkErr = []string{"junk-err-1", "junk-err-2"}
)

// longLineLen is the length of the over-long line the junk child writes.
const longLineLen = 100 << 10

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
		if kids := childProcesses(); len(kids) > 0 {
			fmt.Fprintln(os.Stderr, "child processes left behind (running or unreaped):", kids)
			code = 1
		}
	}
	os.Exit(code)
}

// childProcesses lists the processes whose parent is this one, zombies
// included.
func childProcesses() []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []string
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ..."; comm may hold spaces and parens.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			kids = append(kids, strings.TrimSpace(string(b[:bytes.IndexByte(b, '(')]))+" "+f[0])
		}
	}
	return kids
}

// lastWordsRepeat sizes the "last-words" chunk: about 2 MiB.
const lastWordsRepeat = 200_000

func runChild(mode string) int {
	switch mode {
	case "exit3":
		fmt.Fprintln(os.Stderr, "exit3: giving up")
		return 3
	case "hang":
		fmt.Println("hanging")
		time.Sleep(time.Hour)
		return 0
	case "dial":
		conn, err := net.Dial("unix", os.Getenv(spear.EnvAddress))
		if err != nil {
			return 1
		}
		_, err = conn.Write([]byte{1})
		conn.Close()
		if err != nil {
			return 1
		}
		return 0
	case "junk":
		for _, l := range junkOut {
			fmt.Println(l)
		}
		for _, l := range junkErr {
			fmt.Fprintln(os.Stderr, l)
		}
		fmt.Println(strings.Repeat("x", longLineLen))
		fmt.Println("after-long-line")
	case "grandchild":
		if err := startGrandchild(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	case "escape":
		for _, e := range []struct {
			name string
			attr *syscall.SysProcAttr
		}{
			{"escaped-group", &syscall.SysProcAttr{Setpgid: true}},
			{"escaped-session", &syscall.SysProcAttr{Setsid: true}},
		} {
			cmd := exec.Command("sleep", "300")
			cmd.SysProcAttr = e.attr
			if err := cmd.Start(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			fmt.Printf("%s %d\n", e.name, cmd.Process.Pid)
		}
	case "flaky":
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGUSR1)
		first, drop := context.WithCancel(context.Background())
		defer drop()
		err := serve(first, mode, func(o *sdk.Options) {
			o.OnMessage = func(p []byte) {
				if string(p) == "drop" {
					drop()
				}
			}
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 1
		}
		fmt.Println("dropped; waiting for SIGUSR1")
		<-again
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		if os.Getenv(grandchildEnv) == "1" {
			if err := startGrandchild(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
		}
		_ = serve(context.Background(), mode, nil)
		fmt.Println("terminated; staying anyway")
		time.Sleep(time.Hour)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, mode, nil); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// startGrandchild starts `sleep 300` in this process's group, sharing its
// stdout, and prints "grandchild <pid>".
func startGrandchild() error {
	cmd := exec.Command("sleep", "300")
	cmd.Stdout = os.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	fmt.Printf("grandchild %d\n", cmd.Process.Pid)
	return nil
}

// serve runs an SDK instance from the environment until ctx ends or the
// agent terminates it. Its handler:
//
//   - method "" answers "<instance id>|<payload>" (the junk child prints
//     "handled <payload>" first);
//   - method "block" sends the one-way message "blocked", then waits for
//     the request's end;
//   - method "environ" answers the environment the process started with
//     (/proc/self/environ: NUL-separated), which the SDK cannot change;
//   - method "getenv" answers the variable the payload names;
//   - method "fds" answers what the process's descriptors refer to, one
//     per line ("3 pipe:[1234]");
//   - method "last-words" streams one chunk of lastWordsRepeat times
//     "last words " and exits the process.
//
// mod, which may be nil, adjusts the options.
func serve(ctx context.Context, mode string, mod func(*sdk.Options)) error {
	var in *sdk.Instance
	opts := sdk.Options{
		Handler: sdk.HandlerFunc(func(ctx context.Context, r *sdk.Request) ([]byte, error) {
			switch r.Method {
			case "":
				if mode == "junk" {
					fmt.Printf("handled %s\n", r.Payload)
				}
				return []byte(os.Getenv(spear.EnvInstanceID) + "|" + string(r.Payload)), nil
			case "last-words":
				// A chunk in the socket, then the process is gone: the
				// agent must still deliver the chunk.
				// Large, so that the end of it is still unread when the
				// process exits.
				if _, err := r.Write(bytes.Repeat([]byte("last words "), lastWordsRepeat)); err != nil {
					return nil, err
				}
				os.Exit(0)
			case "block":
				if err := in.Send([]byte("blocked")); err != nil {
					return nil, err
				}
				<-ctx.Done()
				return nil, ctx.Err()
			case "environ":
				return os.ReadFile("/proc/self/environ")
			case "getenv":
				return []byte(os.Getenv(string(r.Payload))), nil
			case "fds":
				return openFiles()
			case "attack":
				if mode == "attacker" {
					return attackHandler(r.Payload)
				}
			}
			return nil, sdk.Error(spear.CodeNotFound, "no method "+r.Method)
		}),
		MaxBackoff: 200 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	// The secret can be read once per process (its descriptor is closed
	// after); a child that serves twice reuses what it read.
	if err := creds.get(); err != nil {
		return err
	}
	opts.ID, opts.Secret, opts.Channel, opts.Address = creds.ID, creds.Secret, creds.Channel, creds.Address
	in, err := sdk.New(opts)
	if err != nil {
		return err
	}
	return in.Serve(ctx)
}

// creds are the child's connection settings, read from the environment
// once.
var creds struct {
	sdk.Options
	get func() error
}

func init() {
	creds.get = sync.OnceValue(creds.FromEnv)
}
