// Command tiny is the smallest instance the process runtime's tests start
// by the thousand: the Go SDK, echoing the payload back. Two methods test
// limits: "alloc" allocates and touches the payload's number of MiB;
// "spawn" starts the payload's number of `sleep 60` processes and answers
// how many started, and how many threads it has then.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"

	"github.com/spear-go/spear/sdk"
)

// kept holds what alloc allocated, so that it stays allocated.
var kept [][]byte

func main() {
	sdk.Run(func(_ context.Context, req *sdk.Request) ([]byte, error) {
		n, _ := strconv.Atoi(string(req.Payload))
		switch req.Method {
		case "alloc":
			b := make([]byte, n<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			kept = append(kept, b)
			return fmt.Appendf(nil, "allocated %d MiB", n), nil
		case "spawn":
			reserveThreads()
			started := 0
			var err error
			for range n {
				if err = exec.Command("sleep", "60").Start(); err != nil {
					break
				}
				started++
			}
			return fmt.Appendf(nil, "started %d threads %d (%v)", started, threads(), err), nil
		}
		return req.Payload, nil
	})
}

// spareThreads is how many idle threads spawn has the Go runtime keep.
const spareThreads = 4

var reserve sync.Once

// reserveThreads makes the Go runtime start spareThreads threads and
// keep them idle, once. Processes and threads count alike against a pids
// limit, and a Go program at its limit that needs a new thread (to run
// goroutines while one waits in a system call, as spawning does) aborts:
// "pthread_create failed". With threads to spare, it starts none while it
// spawns up to the limit and answers. A goroutine locked to its thread
// holds that thread alone, so each locked one that waits makes the
// runtime start another; unlocked, they leave their threads idle.
func reserveThreads() {
	reserve.Do(func() {
		var locked, release sync.WaitGroup
		release.Add(1)
		for range spareThreads {
			locked.Add(1)
			go func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				locked.Done()
				release.Wait()
			}()
		}
		locked.Wait()
		release.Done()
	})
}

// threads returns how many threads the process has, or -1.
func threads() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	_, v, _ := bytes.Cut(b, []byte("\nThreads:"))
	v, _, _ = bytes.Cut(v, []byte("\n"))
	n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
	if err != nil {
		return -1
	}
	return n
}
