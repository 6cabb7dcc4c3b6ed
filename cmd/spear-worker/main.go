// Command spear-worker is the small worker binary of spearlet's embedded
// default: the "echo" function's instances run it. It links the SDK
// (unix, tcp and memory transports) and nothing else of Spear's: no
// client-go, no wazero, no grpc-go, so a process instance costs a few MB
// of memory instead of the whole agent's. spearlet builds it on demand
// (docs/agent.md, "The small worker"); any instance started with the
// SPEAR_* environment can run it too.
package main

import (
	"github.com/spear-go/spear/internal/echoworker"
	"github.com/spear-go/spear/sdk"
)

func main() { sdk.Run(echoworker.Handler) }
