package runtime

import (
	"fmt"

	"github.com/spear-go/spear"
)

// Errors every runtime returns from Start, whatever it runs.
var (
	// ErrClosed: the runtime was closed and starts no more instances. It
	// matches spear.ErrChannelClosed.
	ErrClosed = fmt.Errorf("%w: runtime closed", spear.ErrChannelClosed)
	// ErrExists: an instance with the id is running already, or its
	// channel exists. It matches spear.ErrInvalidInstanceID.
	ErrExists = fmt.Errorf("%w: instance already exists", spear.ErrInvalidInstanceID)
)
