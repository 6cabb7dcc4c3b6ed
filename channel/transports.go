package channel

// The built-in transports. Each registers itself in the table of package
// transport, which is all the factory knows of transports: the agent side
// links the four, and a transport of its own is one more registration
// (docs/architecture.md, "Adding a transport").
import (
	_ "github.com/spear-go/spear/transport/grpc"
	_ "github.com/spear-go/spear/transport/memory"
	_ "github.com/spear-go/spear/transport/tcp"
	_ "github.com/spear-go/spear/transport/unix"
)
