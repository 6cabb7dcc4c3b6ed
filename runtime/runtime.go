// Package runtime defines what the agent asks of a runtime: start an
// instance of a function with its own authenticated channel, report its
// status, and stop it. The implementations are runtime/process (child
// processes), runtime/wasm (wazero modules inside the agent) and
// runtime/kubernetes (pods through client-go).
//
// A runtime is a registered part. Its package has its own [Spec] type,
// what an instance runs, and registers a [Kind] when it is initialised,
// which tells the agent how to read that spec from a function's
// configuration; [Settings] are what every runtime reads besides. A
// program serves a runtime by importing its package and handing the
// agent a [Runtime] built from it (cmd/spearlet does both).
package runtime

import (
	"context"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
)

// Status is an instance's lifecycle state (the seed project's set).
type Status string

// The statuses.
const (
	StatusStarting  Status = "starting"  // launched, not yet connected and authenticated
	StatusRunning   Status = "running"   // connected and answering
	StatusDegraded  Status = "degraded"  // running, but a recent request or probe failed
	StatusUnhealthy Status = "unhealthy" // missed its heartbeats or cannot be reached
	StatusStopping  Status = "stopping"  // being stopped
	StatusStopped   Status = "stopped"   // gone; Reason says why
)

// Info is an instance's observable state.
type Info struct {
	ID              spear.InstanceID `json:"id"`
	Function        string           `json:"function"`
	Status          Status           `json:"status"`
	Reason          string           `json:"reason,omitempty"` // why it is in Status, when not running
	Created         time.Time        `json:"created"`
	LastHealthCheck time.Time        `json:"last_health_check,omitzero"`
	PID             int              `json:"pid,omitempty"` // process instances
	Pod             string           `json:"pod,omitempty"` // kubernetes instances: "namespace/name"
}

// Instance is one running (or stopped) runtime instance.
type Instance interface {
	// ID returns the instance's id.
	ID() spear.InstanceID
	// Channel returns the instance's channel.
	Channel() *channel.Channel
	// Info returns the instance's current state.
	Info() Info
	// Done is closed when the instance has stopped, for any reason; Info
	// then reports StatusStopped and the reason.
	Done() <-chan struct{}
	// Logs returns up to n of the instance's most recent output lines,
	// oldest first.
	Logs(n int) []string
}

// Follower is an Instance whose output can be followed as it is written.
// The runtimes in this module implement it; the agent refuses to follow
// an instance that does not.
type Follower interface {
	// FollowLogs calls fn with up to tail of the latest output lines,
	// then with each new line as it comes. It returns nil once the
	// instance has stopped and fn has had its last line, ctx's error when
	// ctx ends first, or fn's error.
	FollowLogs(ctx context.Context, tail int, fn func(line string) error) error
}

// Runtime starts and stops instances of one runtime type. Implementations
// are safe for concurrent use.
type Runtime interface {
	// Type returns the runtime type.
	Type() spear.RuntimeType
	// Start launches an instance with id that runs spec, which must be
	// the runtime's own Spec type, and waits, within set.StartTimeout and
	// ctx, until its channel is connected and authenticated; then the
	// instance is StatusRunning. On failure nothing is left behind.
	// Errors match spear.ErrInvalidConfig for a spec of another type or
	// an invalid one, ErrExists for an id in use, and ErrClosed after
	// Close.
	Start(ctx context.Context, id spear.InstanceID, set Settings, spec Spec) (Instance, error)
	// Stop stops an instance: a terminate signal over its channel first,
	// then force after its Settings.StopGrace. It waits until the
	// instance is gone and its channel closed, and is safe to call for an
	// instance that already stopped.
	Stop(ctx context.Context, inst Instance) error
	// Close stops every instance of the runtime and releases its resources.
	Close(ctx context.Context) error
}
