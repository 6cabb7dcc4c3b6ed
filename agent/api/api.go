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
	// Balancer is the balancing policy.
	Balancer string `json:"balancer,omitempty"`
	// Instances counts the live instances, Ready those balanced to now,
	// InFlight the invocations running on them, Queued those waiting for
	// a slot; Desired is the autoscaler's figure (0 without a target).
	Instances int `json:"instances"`
	Ready     int `json:"ready"`
	InFlight  int `json:"in_flight"`
	Queued    int `json:"queued"`
	Desired   int `json:"desired,omitempty"`
	// State is "ok", "idle" (no instance: the next invocation is a cold
	// start), "panic" (the autoscaler scales on its panic window) or
	// "crash-loop" (starts keep failing: invocations that find no
	// instance fail at once until NextRetry; Failures starts failed in a
	// row, the last with LastError). NextRetry is also when owed
	// restarts are due.
	State     string    `json:"state"`
	Failures  int       `json:"failures,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	NextRetry time.Time `json:"next_retry,omitzero"`
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
	InFlight        int       `json:"in_flight"`
	// Health is the instance's standing with outlier ejection: "ok",
	// "ejected" (until EjectedUntil) or "probation", with HealthReason;
	// empty for stopped instances.
	Health       string    `json:"health,omitempty"`
	HealthReason string    `json:"health_reason,omitempty"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
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

// Health is the body of GET /healthz.
type Health struct {
	// Status is "ok", or "shutting_down" (with HTTP status 503).
	Status string `json:"status"`
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
