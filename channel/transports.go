package channel

// The built-in transports. Each registers itself in the table of package
// transport, which is all the factory knows of transports: the agent side
// links the four, and a transport of its own is one more registration
// (docs/architecture.md, "Adding a transport").
import (
	_ "github.com/spear-go/spear/transport/grpc"   // registers grpc
	_ "github.com/spear-go/spear/transport/memory" // registers memory
	_ "github.com/spear-go/spear/transport/tcp"    // registers tcp
	_ "github.com/spear-go/spear/transport/unix"   // registers unix
)
