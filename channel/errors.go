package channel

import (
	"fmt"

	"github.com/spear-go/spear"
)

// Errors of the factory, each in a spear category.
var (
	// ErrExists: the instance already has a channel, or one is being
	// created. It matches spear.ErrInvalidInstanceID: the id cannot be
	// used for a new instance.
	ErrExists = fmt.Errorf("%w: channel: instance already has a channel", spear.ErrInvalidInstanceID)
	// ErrFactoryClosed: the factory was closed; it creates no channels. It
	// matches spear.ErrChannelClosed.
	ErrFactoryClosed = fmt.Errorf("%w: channel: factory closed", spear.ErrChannelClosed)
)
