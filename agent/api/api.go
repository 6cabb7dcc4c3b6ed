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
	// Readiness is required or optional: whether the function holds
	// back the agent's readiness until min_instances run.
	Readiness string `json:"readiness"`
	// Instances counts the live instances, Running those running and
	// connected, InFlight the invocations running on them.
	Instances int `json:"instances"`
	Running   int `json:"running"`
	InFlight  int `json:"in_flight"`
	// Health is serving, degraded, crash_looping or no_instances, and
	// HealthReason says why when it is not serving
	// (docs/observability.md).
	Health       string `json:"health"`
	HealthReason string `json:"health_reason,omitempty"`
	// Ready is false while the function holds back the agent's readiness.
	Ready bool `json:"ready"`
	// Restarts counts the restarts scheduled since the agent started;
	// LastFailure says why the last start failed or the last instance
	// stopped unasked.
	Restarts      int       `json:"restarts"`
	LastFailure   string    `json:"last_failure,omitempty"`
	LastFailureAt time.Time `json:"last_failure_at,omitzero"`
}

// FunctionHealth names a function that holds back readiness, in a
// not-ready answer of GET /readyz.
type FunctionHealth struct {
	Function     string `json:"function"`
	Health       string `json:"health"`
	Reason       string `json:"reason,omitempty"`
	Running      int    `json:"running"`
	MinInstances int    `json:"min_instances"`
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
	// Ejected is true while balancing keeps the instance out of the pool.
	Ejected bool `json:"ejected,omitempty"`
	// LastError is the last error an invocation on the instance ended
	// with (a stopped instance's Reason says why it stopped).
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Channel is the channel type; Connected whether the instance is
	// connected to it now.
	Channel   string         `json:"channel"`
	Connected bool           `json:"connected"`
	Stats     stats.Snapshot `json:"stats"`
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
	// HeaderMetadataPrefix starts the request headers whose rest of name
	// (lowercased) and value become invocation metadata.
	HeaderMetadataPrefix = "Spear-Meta-"
	// TrailerErrorCode and TrailerError end a streamed invocation that
	// failed after its output began: the error's code and message.
	TrailerErrorCode = "Spear-Error-Code"
	TrailerError     = "Spear-Error"
)
