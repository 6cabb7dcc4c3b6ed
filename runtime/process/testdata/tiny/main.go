// Command tiny is the smallest instance the process runtime's tests start
// by the thousand: the Go SDK, echoing the payload back.
package main

import (
	"context"

	"github.com/spear-go/spear/sdk"
)

func main() {
	sdk.Run(func(_ context.Context, req *sdk.Request) ([]byte, error) {
		return req.Payload, nil
	})
}
