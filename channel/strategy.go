package channel

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spear-go/spear"
)

// Strategy says which channel types a runtime type uses.
type Strategy struct {
	// Order lists the types to try, preferred first, when an instance's
	// Config names none. Creation falls back along it.
	Order []Type
	// Also lists types an instance's Config may choose explicitly besides
	// those in Order.
	Also []Type
}

// Allows reports whether an instance may use channel type t under s.
func (s Strategy) Allows(t Type) bool {
	return slices.Contains(s.Order, t) || slices.Contains(s.Also, t)
}

// Choices lists the types s allows for a message: "unix, tcp or grpc".
func (s Strategy) Choices() string {
	all := slices.Concat(s.Order, s.Also)
	names := make([]string, len(all))
	for i, t := range all {
		names[i] = string(t)
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// DefaultStrategies returns the built-in strategies: process instances
// prefer unix sockets and fall back to tcp (grpc on request); Kubernetes
// pods prefer grpc, then tcp; wasm modules use memory.
func DefaultStrategies() map[spear.RuntimeType]Strategy {
	return map[spear.RuntimeType]Strategy{
		spear.Process:    {Order: []Type{Unix, TCP}, Also: []Type{GRPC}},
		spear.Kubernetes: {Order: []Type{GRPC, TCP}},
		spear.Wasm:       {Order: []Type{Memory}},
	}
}

// Attempt is one channel type tried while creating a channel.
type Attempt struct {
	Type Type
	Err  error
}

// CreationError reports that no channel type worked for an instance. It
// matches spear.ErrChannelCreationFailed, and unwraps to each attempt's
// error. The factory returns it inside a *spear.InstanceError, which names
// the instance, so its own text does not.
type CreationError struct {
	ID       spear.InstanceID
	Attempts []Attempt
}

func (e *CreationError) Error() string {
	var b strings.Builder
	b.WriteString("channel creation failed; tried")
	for i, a := range e.Attempts {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %s: %v", a.Type, a.Err)
	}
	return b.String()
}

// Is makes the error match spear.ErrChannelCreationFailed.
func (e *CreationError) Is(target error) bool { return target == spear.ErrChannelCreationFailed }

// Unwrap returns the attempts' errors.
func (e *CreationError) Unwrap() []error {
	errs := make([]error, len(e.Attempts))
	for i, a := range e.Attempts {
		errs[i] = a.Err
	}
	return errs
}
