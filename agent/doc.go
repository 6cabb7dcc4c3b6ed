// Package agent is the spearlet daemon as a library: its configuration,
// the per-function pools of runtime instances, invocation, and the API
// servers (HTTP/JSON and gRPC) with metrics, traces, health and the
// dashboard.
//
// The pieces, from the inside out:
//
//   - [Config] is the daemon's configuration, read from YAML ([LoadConfig],
//     [ParseConfig]) and overridden from the environment
//     ([Config.ApplyEnv]). A function's runtime-specific fields are decoded
//     by its runtime's registered runtime.Kind into its runtime.Spec; the
//     agent knows no runtime by name. Every problem is a [ConfigError]
//     with its file, line, column and YAML path.
//   - [Agent] owns one pool per function (pool.go). A pool starts
//     instances through a runtime.Runtime, balances invocations over the
//     ready ones with the function's balancer (package agent/balancer),
//     starts more on demand up to max_instances, keeps min_instances,
//     scales on a concurrency target and down on idleness (scale.go),
//     restarts crashed ones with back-off and protects the function from
//     a crash loop (restart.go), retries only what cannot have run
//     (retry.go), and ejects instances that fail or lag their peers
//     (outlier.go). Its state, as data, is a [PoolStatus] (status.go).
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
//   - Observability (docs/observability.md): Prometheus series per
//     function and per live instance, read at scrape time from the pools'
//     [PoolStatus] and the channels' statistics (metrics.go); OpenTelemetry
//     spans when [Options.TracerProvider] is set (tracing.go); each
//     function's health, aggregated from its PoolStatus, /livez, /readyz
//     and gRPC health per function (health.go); instances' output followed
//     over server-sent events and gRPC; and the dashboard at /ui (ui.go,
//     assets in agent/ui).
//
// Goroutines: besides the pools' (pool.go), Run keeps the gRPC health
// statuses current with one goroutine, ended at shutdown; each followed
// log stream runs its follower on a goroutine of its own, ended when the
// client leaves or the instance stops; the dashboard's event stream runs
// on its request's goroutine.
//
// Errors are categorised by the sentinels in errors.go; [HTTPStatus] and
// [GRPCCode] map them to the wire.
package agent
