// Command echo is the example function of docs/kubernetes.md, packaged as
// the image ghcr.io/spear-go/examples/echo by cmd/spear-image. It runs
// anywhere an instance runs: as a process (runtime process, command
// ./echo) or in a pod (runtime kubernetes), and connects back to its agent
// through the SPEAR_* environment the runtime gives it.
//
// Methods:
//
//   - "" and "echo" answer with the payload;
//   - "upper" answers with the payload in upper case;
//   - "words" streams the payload's words, one chunk each;
//   - "whoami" answers with the instance's id.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/sdk"
	_ "github.com/spear-go/spear/transport/grpc" // pods reach the agent over grpc
)

func main() {
	id := os.Getenv(spear.EnvInstanceID)
	sdk.Run(func(ctx context.Context, req *sdk.Request) ([]byte, error) {
		switch req.Method {
		case "", "echo":
			return req.Payload, nil
		case "upper":
			return []byte(strings.ToUpper(string(req.Payload))), nil
		case "words":
			for _, w := range strings.Fields(string(req.Payload)) {
				if _, err := req.Write([]byte(w)); err != nil {
					return nil, err
				}
			}
			return nil, nil
		case "whoami":
			return []byte(id), nil
		}
		return nil, fmt.Errorf("unknown method %q (want echo, upper, words or whoami)", req.Method)
	})
}
