/**
 * Spear's instance SDK for Node.js: serve a function to a Spear agent.
 *
 * ```ts
 * import { run } from "@spear-go/sdk";
 *
 * run(async (req) => `hello, ${req.text}`);
 * ```
 *
 * Handlers stream output with `req.write(chunk)` and see `req.signal` (an
 * AbortSignal) abort when the caller gives up or the deadline passes. run()
 * reads the instance's identity, secret and address from the SPEAR_*
 * environment the agent sets, reconnects with backoff when the connection
 * drops, and logs JSON lines to stderr. The protocol is docs/protocol.md of
 * the Spear repository; the package has no runtime dependencies.
 *
 * @packageDocumentation
 */

export { type Config, Secret, configFromEnv } from "./config.js";
export { AuthFailedError, Code, ConfigError, ProtocolError, SpearError } from "./errors.js";
export { type Handler, type Handlers, Instance, type InstanceOptions, type Signal, SignalKind, run, serve } from "./instance.js";
export { JSONLogger, type Level, type Logger } from "./log.js";
export { Request, type Result } from "./request.js";
export { type TLSConfig } from "./tls.js";
