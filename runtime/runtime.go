// Package runtime defines what the agent asks of a runtime: start an
// instance of a function with its own authenticated channel, report its
// status, and stop it. The implementations are runtime/process (child
// processes), runtime/wasm (wazero modules inside the agent) and
// runtime/kubernetes (pods through client-go).
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

// Spec is what to run for one instance. Each runtime reads the fields it
// needs and ignores the others.
type Spec struct {
	// Function names the function the instance serves.
	Function string

	// Command and Args start a process instance (runtime/process). Env is
	// added to the agent's environment; Dir is the working directory.
	Command string
	Args    []string
	Env     []string
	Dir     string

	// WasmFile, or WasmBytes, is the module of a wasm instance. MemoryLimit
	// caps its linear memory in bytes (0: the runtime's default).
	WasmFile    string
	WasmBytes   []byte
	MemoryLimit uint64

	// Image, Namespace, Labels, CPU and Memory describe a Kubernetes pod;
	// CPU and Memory are resource quantities such as "500m" and "128Mi".
	Image     string
	Namespace string
	Labels    map[string]string
	CPU       string
	Memory    string

	// Channel overrides the channel configuration (type, timeouts).
	Channel *channel.Config

	// StartTimeout bounds launch to authenticated connection (default 10s).
	StartTimeout time.Duration
	// StopGrace is how long Stop waits after asking nicely before forcing
	// (default 5s).
	StopGrace time.Duration
}

// Info is an instance's observable state.
type Info struct {
	ID              spear.InstanceID `json:"id"`
	Function        string           `json:"function"`
	Status          Status           `json:"status"`
	Reason          string           `json:"reason,omitempty"` // why it is in Status, when not running
	Created         time.Time        `json:"created"`
	LastHealthCheck time.Time        `json:"last_health_check,omitzero"`
	PID             int              `json:"pid,omitempty"` // process instances
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

// Runtime starts and stops instances of one runtime type. Implementations
// are safe for concurrent use.
type Runtime interface {
	// Type returns the runtime type.
	Type() spear.RuntimeType
	// Start launches an instance with id and waits, within
	// spec.StartTimeout and ctx, until its channel is connected and
	// authenticated; then the instance is StatusRunning. On failure
	// nothing is left behind.
	Start(ctx context.Context, id spear.InstanceID, spec Spec) (Instance, error)
	// Stop stops an instance: a terminate signal over its channel first,
	// then force after spec.StopGrace. It waits until the instance is gone
	// and its channel closed, and is safe to call for an instance that
	// already stopped.
	Stop(ctx context.Context, inst Instance) error
	// Close stops every instance of the runtime and releases its resources.
	Close(ctx context.Context) error
}
