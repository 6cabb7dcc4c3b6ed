// Command tiny is the smallest instance the process runtime's tests start
// by the thousand: the Go SDK, echoing the payload back. Two methods test
// limits: "alloc" allocates and touches the payload's number of MiB;
// "spawn" starts the payload's number of `sleep 60` processes and answers
// how many started.
package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"

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
			started := 0
			var err error
			for range n {
				if err = exec.Command("sleep", "60").Start(); err != nil {
					break
				}
				started++
			}
			return fmt.Appendf(nil, "started %d (%v)", started, err), nil
		}
		return req.Payload, nil
	})
}
