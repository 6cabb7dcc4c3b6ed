package sdk_test

import (
	"context"
	"strings"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/sdk"
)

// An instance's whole main: the runtime that starts the program hands it
// its identity, secret and address in SPEAR_* variables, and Run serves
// the handler until the agent stops the instance. (The example needs an
// agent to connect to, so it is compiled, not run.)
func ExampleRun() {
	sdk.Run(func(ctx context.Context, req *sdk.Request) ([]byte, error) {
		switch req.Method {
		case "words": // streamed output: one chunk per word
			for _, w := range strings.Fields(string(req.Payload)) {
				if _, err := req.Write([]byte(w)); err != nil {
					return nil, err
				}
			}
			return nil, nil
		case "", "upper":
			return []byte(strings.ToUpper(string(req.Payload))), nil
		}
		// The caller sees this code and message (HTTP 404, "function_not_found").
		return nil, sdk.Error(spear.CodeNotFound, "no method "+req.Method)
	})
}
