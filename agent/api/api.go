// Package api holds the JSON types of the spearlet HTTP API, shared by the
// daemon (package agent) and its Go client (package client). It has no
// dependencies beyond the standard library and package stats.
package api

import (
	"time"

	"github.com/spear-go/spear/stats"
)

// Function describes a configured function (GET /v1/functions).
type Function struct {
	Name           string `json:"name"`
	Runtime        string `json:"runtime"`
	MinInstances   int    `json:"min_instances"`
	MaxInstances   int    `json:"max_instances"`
	MaxConcurrency int    `json:"max_concurrency"`
	// Balancer is the balancing policy; Readiness is required or
	// optional: whether the function holds back the agent's readiness
	// until min_instances are ready.
	Balancer  string `json:"balancer,omitempty"`
	Readiness string `json:"readiness"`
	// Instances counts the live instances, Ready those balanced to now
	// (running, connected, not ejected), InFlight the invocations running
	// on them, Queued those waiting for a slot; Desired is the
	// autoscaler's figure (0 without a target), Panicking whether it
	// scales on its panic window.
	Instances int  `json:"instances"`
	Ready     int  `json:"ready"`
	InFlight  int  `json:"in_flight"`
	Queued    int  `json:"queued"`
	Desired   int  `json:"desired,omitempty"`
	Panicking bool `json:"panicking,omitempty"`
	// Health is serving, degraded, crash_looping or no_instances, and
	// HealthReason says why when it is not serving
	// (docs/observability.md). ReadinessMet is false while the function
	// holds back the agent's readiness.
	Health       string `json:"health"`
	HealthReason string `json:"health_reason,omitempty"`
	ReadinessMet bool   `json:"readiness_met"`
	// FailedStarts counts the starts that failed in a row while the
	// function is crash-looping; invocations that find no instance fail
	// at once until NextRetry. NextRetry is also when owed restarts are
	// due.
	FailedStarts int       `json:"failed_starts,omitempty"`
	NextRetry    time.Time `json:"next_retry,omitzero"`
	// Restarts counts the restarts of instances that stopped unasked
	// since the agent started; LastError says why the last start failed
	// or the last instance stopped unasked, at LastErrorAt.
	Restarts    int       `json:"restarts"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// FunctionHealth names a function that holds back readiness, in a
// not-ready answer of GET /readyz: its health, its ready instances
// against min_instances, and, when it is failing, its last error and
// next retry.
type FunctionHealth struct {
	Function     string    `json:"function"`
	Health       string    `json:"health"`
	Reason       string    `json:"reason,omitempty"`
	Ready        int       `json:"ready"`
	MinInstances int       `json:"min_instances"`
	LastError    string    `json:"last_error,omitempty"`
	NextRetry    time.Time `json:"next_retry,omitzero"`
}

// Instance describes an instance (GET /v1/instances).
type Instance struct {
	// ID is the full instance id, "[namespace:]runtime:name".
	ID       string `json:"id"`
	Function string `json:"function"`
	Runtime  string `json:"runtime"`
	// Status is starting, running, degraded, unhealthy, stopping or
	// stopped; Reason says why when it is not running.
	Status          string    `json:"status"`
	Reason          string    `json:"reason,omitempty"`
	Created         time.Time `json:"created"`
	LastHealthCheck time.Time `json:"last_health_check,omitzero"`
	PID             int       `json:"pid,omitempty"`
	// Pod is "namespace/name" of a kubernetes instance's pod.
	Pod      string `json:"pod,omitempty"`
	InFlight int    `json:"in_flight"`
	// Restarts counts the times the instance connected again after its
	// first connection (a lost connection, a wasm instance's reset).
	Restarts int `json:"restarts"`
	// Health is the live instance's standing with outlier ejection: "ok",
	// "ejected" (until EjectedUntil) or "probation", with HealthReason;
	// empty for stopped instances. Its function's health is
	// Function.Health.
	Health       string    `json:"health,omitempty"`
	HealthReason string    `json:"health_reason,omitempty"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	// LastError is the last error an invocation on the instance ended
	// with (a stopped instance's Reason says why it stopped).
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Channel is the channel type; Connected whether the instance is
	// connected to it now, over Connections connections.
	Channel     string         `json:"channel"`
	Connected   bool           `json:"connected"`
	Connections int            `json:"connections"`
	Stats       stats.Snapshot `json:"stats"`
}

// FunctionList is the body of GET /v1/functions.
type FunctionList struct {
	Functions []Function `json:"functions"`
}

// InstanceList is the body of GET /v1/instances.
type InstanceList struct {
	Instances []Instance `json:"instances"`
}

// CreateInstance is the body of POST /v1/instances.
type CreateInstance struct {
	Function string `json:"function"`
}

// Logs is the body of GET /v1/instances/{id}/logs.
type Logs struct {
	ID    string   `json:"id"`
	Lines []string `json:"lines"`
}

// Reload is the body of the answer to POST /v1/reload: what the reload did
// to each function, in the order of the configuration (removed ones in the
// old order).
type Reload struct {
	Added     []string `json:"added"`
	Changed   []string `json:"changed"`
	Removed   []string `json:"removed"`
	Unchanged []string `json:"unchanged"`
}

// Health is the body of GET /healthz, /livez and /readyz.
type Health struct {
	// Status is "ok" (/healthz, /livez), "ready" or "not_ready" (/readyz),
	// or "shutting_down" (503 from /healthz and /readyz).
	Status string `json:"status"`
	// Waiting lists the functions that hold back readiness.
	Waiting []FunctionHealth `json:"waiting,omitempty"`
}

// Error is the body of every error response.
type Error struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong. Code is a short machine-readable
// category (docs/agent.md lists them); Message is for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Headers and trailers of the invoke endpoint.
const (
	// HeaderInstance names the instance that answered an invocation.
	HeaderInstance = "Spear-Instance"
	// HeaderKey carries an invocation's affinity key, for functions
	// balanced by hash.
	HeaderKey = "Spear-Key"
	// HeaderMetadataPrefix starts the request headers whose rest of name
	// (lowercased) and value become invocation metadata.
	HeaderMetadataPrefix = "Spear-Meta-"
	// TrailerErrorCode and TrailerError end a streamed invocation that
	// failed after its output began: the error's code and message.
	TrailerErrorCode = "Spear-Error-Code"
	TrailerError     = "Spear-Error"
)

// Where a client finds the daemon: file names in the daemon's state
// directory (docs/agent.md, "Authentication").
const (
	// SocketName is the API's unix socket: whoever may open it may use
	// the API, without a token.
	SocketName = "api.sock"
	// TokenName holds the bearer token that callers over TCP present as
	// "Authorization: Bearer TOKEN" (HTTP) or "authorization" metadata
	// (gRPC).
	TokenName = "api-token"
)
