package process_test

// The attacks of a hostile sibling instance on another (issue 7). The
// attacker is an instance like the victim, started by the same runtime,
// and runs as the victim's user (or, in the second case, a user of its
// own). Every attack must fail while the victim keeps serving.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/transport"

	_ "github.com/spear-go/spear/transport/grpc" // the shared grpc listener's attack
)

// attackTarget is what the attacker is told about its victim: what any
// process can see (its pid, its socket's path, its id, the agent's
// listeners) and, to test the worst case, its secret, as if stolen.
type attackTarget struct {
	PID    int    `json:"pid"`
	Socket string `json:"socket"`
	ID     string `json:"id"`
	Secret string `json:"secret"` // hex
	TCP    string `json:"tcp"`
	GRPC   string `json:"grpc"`
}

// attackResult is one attack's outcome: Err is why it failed, empty when
// it succeeded.
type attackResult struct {
	Attack string `json:"attack"`
	Err    string `json:"err,omitempty"`
	Got    string `json:"got,omitempty"`
}

// attack runs every attack on t from this process, the attacker instance.
func attack(t attackTarget) []attackResult {
	var results []attackResult
	try := func(name string, f func() (string, error)) {
		got, err := f()
		r := attackResult{Attack: name, Got: got}
		if err != nil {
			r.Err = err.Error()
		}
		results = append(results, r)
	}
	proc := fmt.Sprintf("/proc/%d/", t.PID)
	readFile := func(path string) func() (string, error) {
		return func() (string, error) {
			b, err := os.ReadFile(path)
			return fmt.Sprintf("%d bytes", len(b)), err
		}
	}
	try("read the sibling's environment (/proc/PID/environ)", readFile(proc+"environ"))
	try("list the sibling's descriptors (/proc/PID/fd)", func() (string, error) {
		entries, err := os.ReadDir(proc + "fd")
		return fmt.Sprintf("%d descriptors", len(entries)), err
	})
	try("read the secret's pipe (/proc/PID/fd/3)", readFile(proc+"fd/3"))
	try("read the sibling's memory (/proc/PID/mem)", func() (string, error) {
		f, err := os.Open(proc + "mem")
		if err != nil {
			return "", err
		}
		f.Close()
		return "opened", nil
	})
	try("attach with ptrace", func() (string, error) {
		goruntime.LockOSThread() // ptrace requests come from the tracing thread
		defer goruntime.UnlockOSThread()
		if err := unix.PtraceAttach(t.PID); err != nil {
			return "", err
		}
		_ = unix.PtraceDetach(t.PID)
		return "attached", nil
	})
	try("take the secret's pipe with pidfd_getfd", func() (string, error) {
		pidfd, err := unix.PidfdOpen(t.PID, 0)
		if err != nil {
			return "", err
		}
		defer unix.Close(pidfd)
		fd, err := unix.PidfdGetfd(pidfd, 3, 0)
		if err != nil {
			return "", err
		}
		unix.Close(fd)
		return "got descriptor 3", nil
	})
	try("join the sibling's process group (setpgid)", func() (string, error) {
		return "joined", syscall.Setpgid(0, t.PID)
	})
	id, _ := spear.ParseInstanceID(t.ID)
	secret, _ := hex.DecodeString(t.Secret)
	authenticate := func(typ, addr string) func() (string, error) {
		return func() (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := transport.Dial(ctx, typ, addr, transport.DialConfig{})
			if err != nil {
				return "", err
			}
			defer conn.Close()
			if _, err := auth.Connect(ctx, conn, id, secret); err != nil {
				return "", err
			}
			return "authenticated as " + t.ID, nil
		}
	}
	try("connect to the sibling's socket with its stolen secret", authenticate("unix", t.Socket))
	try("authenticate as the sibling over tcp with its stolen secret", authenticate("tcp", t.TCP))
	try("authenticate as the sibling over grpc with its stolen secret", authenticate("grpc", t.GRPC))
	return results
}

// attackHandler serves method "attack" for the attacker child.
func attackHandler(payload []byte) ([]byte, error) {
	var t attackTarget
	if err := json.Unmarshal(payload, &t); err != nil {
		return nil, err
	}
	return json.Marshal(attack(t))
}

// sharedListeners makes the factory start its tcp and grpc listeners, by
// creating a channel on each, and returns their addresses.
func sharedListeners(t *testing.T, f *channel.Factory) (tcp, grpc string) {
	t.Helper()
	addr := func(typ channel.Type) string {
		ch, err := f.Create(testCtx(t), newID(), &channel.Config{Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ch.Close() })
		return ch.Credentials().Address
	}
	return addr(channel.TCP), addr(channel.GRPC)
}

// TestSiblingAttacks runs the attacks of a sibling instance on a victim
// while the victim serves a loop of legitimate invocations: every attack
// fails, and no invocation does. As root, both run as a test user (root
// may read any process); a second case gives each a user of its own.
func TestSiblingAttacks(t *testing.T) {
	cases := []struct {
		name string
		user func(t *testing.T) (victim, attacker string)
	}{
		{"same user", func(t *testing.T) (string, string) {
			if os.Geteuid() != 0 {
				return "", ""
			}
			u := fmt.Sprintf("%d:%d", testUID, testUID)
			return u, u
		}},
		{"users of their own", func(t *testing.T) (string, string) {
			needRoot(t)
			return process.UserRange, process.UserRange
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			victimUser, attackerUser := tc.user(t)
			e := newEnvWith(t, process.Options{UserRange: process.UIDRange{First: testRange0 + 20, Last: testRange0 + 29}})
			bin := os.Args[0]
			if victimUser != "" {
				bin = publicCopy(t, bin)
			}
			spec := func(mode, user string) child {
				c := childSpec(mode)
				c.Command, c.User = bin, user
				return c
			}
			victim := e.start(t, spec("echo", victimUser))
			attacker := e.start(t, spec("attacker", attackerUser))
			tcp, grpc := sharedListeners(t, e.f)
			cr := victim.Channel().Credentials()
			target, _ := json.Marshal(attackTarget{
				PID: victim.Info().PID, Socket: cr.Address, ID: cr.ID.String(),
				Secret: hex.EncodeToString(cr.Secret), TCP: tcp, GRPC: grpc,
			})

			calls, failures := legitimateLoop(t, victim)
			out, err := channel.Execute(testCtx(t), attacker.Channel(), channel.Invocation{Method: "attack", Payload: target})
			n, failed := calls(), failures()
			if err != nil {
				t.Fatal(err)
			}
			var results []attackResult
			if err := json.Unmarshal(out, &results); err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				if r.Err == "" {
					t.Errorf("ATTACK SUCCEEDED: %s: %s", r.Attack, r.Got)
				} else {
					t.Logf("refused: %s: %s", r.Attack, r.Err)
				}
			}
			if len(results) != 10 {
				t.Errorf("%d attacks ran, want 10", len(results))
			}
			t.Logf("legitimate invocations during the attacks: %d, failed: %d", n, failed)
			if failed != 0 || n == 0 {
				t.Errorf("%d of %d legitimate invocations failed during the attacks", failed, n)
			}
			echo(t, victim, "still mine")
			if info := victim.Info(); info.Status != runtime.StatusRunning {
				t.Errorf("victim after the attacks: %+v", info)
			}
		})
	}
}

// legitimateLoop invokes inst over and over until the test ends, and
// returns readers of the number of calls and failures so far; the loop
// stops when the first reader is called.
func legitimateLoop(t *testing.T, inst runtime.Instance) (calls, failures func() int) {
	t.Helper()
	var n, failed atomic.Int64
	ctx, cancel := context.WithCancel(testCtx(t))
	var wg sync.WaitGroup
	wg.Go(func() {
		for k := 0; ctx.Err() == nil; k++ {
			payload := fmt.Sprintf("legit-%d", k)
			out, err := channel.Execute(testCtx(t), inst.Channel(), channel.Invocation{Payload: []byte(payload)})
			n.Add(1)
			if err != nil || string(out) != inst.ID().String()+"|"+payload {
				failed.Add(1)
			}
		}
	})
	var stop sync.Once
	halt := func() { stop.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(halt)
	return func() int { halt(); return int(n.Load()) }, func() int { halt(); return int(failed.Load()) }
}
