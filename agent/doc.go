// Package agent is the spearlet daemon as a library: its configuration,
// the per-function pools of runtime instances, invocation, and the API
// servers (HTTP/JSON and gRPC) with Prometheus metrics.
//
// The pieces, from the inside out:
//
//   - [Config] is the daemon's configuration, read from YAML ([LoadConfig],
//     [ParseConfig]) and overridden from the environment
//     ([Config.ApplyEnv]). A function's runtime-specific fields are decoded
//     by its runtime's registered runtime.Kind into its runtime.Spec; the
//     agent knows no runtime by name. Every problem is a [ConfigError]
//     with its file, line, column and YAML path.
//   - [Agent] owns one pool per function. A pool starts instances through
//     a runtime.Runtime, balances invocations over them (the running
//     instance with the fewest in-flight invocations under
//     max_concurrency), starts more up to max_instances, keeps
//     min_instances, and restarts crashed ones with backoff.
//     [Agent.Reload] applies a new configuration while it serves: added
//     functions start, changed ones roll onto new pools, removed ones
//     drain and stop.
//   - [Agent.Handler] serves the HTTP API and [Agent.RegisterGRPC] the gRPC
//     one (service spear.v1.Agent, proto/spear/v1/agent.proto).
//   - [Run] wires everything from a Config: the channel factory, the
//     runtimes its caller offers ([RunOptions.Runtimes]; cmd/spearlet
//     chooses them), the agent and both servers, reloads when asked
//     ([RunOptions.Reload]), and shuts down gracefully when its context
//     ends.
//
// Errors are categorised by the sentinels in errors.go; [HTTPStatus] and
// [GRPCCode] map them to the wire.
package agent
