// The bootstrap environment (docs/protocol.md, section 2) and the secret hand-off.

import { closeSync, readFileSync } from "node:fs";
import { inspect } from "node:util";

import { ConfigError } from "./errors.js";
import { type TLSConfig, tlsFromEnv } from "./tls.js";

export const ENV_INSTANCE_ID = "SPEAR_INSTANCE_ID";
export const ENV_SECRET = "SPEAR_SECRET";
export const ENV_SECRET_FILE = "SPEAR_SECRET_FILE";
export const ENV_SECRET_FD = "SPEAR_SECRET_FD";
export const ENV_CHANNEL = "SPEAR_CHANNEL";
export const ENV_ADDRESS = "SPEAR_ADDRESS";

/** The transports this SDK can dial. */
export const TRANSPORTS = ["unix", "tcp"] as const;

/** The instance's secret. It never prints: inspecting, stringifying or logging it shows it redacted. */
export class Secret {
  readonly #value: Buffer;

  constructor(value: Uint8Array) {
    this.#value = Buffer.from(value);
  }

  /** Returns the secret's bytes. */
  reveal(): Buffer {
    return this.#value;
  }

  toString(): string {
    return "Secret([redacted])";
  }

  toJSON(): string {
    return this.toString();
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** Where and as whom an instance connects. */
export interface Config {
  instanceId: string;
  secret: Secret;
  channel: (typeof TRANSPORTS)[number];
  address: string;
  /** TLS on a tcp channel, from the SPEAR_TLS_* variables; undefined: none. */
  tls?: TLSConfig;
}

/**
 * Reads the configuration from the SPEAR_* variables of env (default
 * process.env).
 *
 * The secret comes from, in order of preference: the inherited file
 * descriptor named by SPEAR_SECRET_FD (read to EOF, then closed), the file
 * named by SPEAR_SECRET_FILE, or SPEAR_SECRET. Each holds it hex-encoded;
 * surrounding whitespace is ignored. SPEAR_SECRET and SPEAR_SECRET_FD are
 * deleted from env once read, so that processes the function starts do not
 * inherit them.
 */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): Config {
  const instanceId = env[ENV_INSTANCE_ID] ?? "";
  if (!instanceId) throw new ConfigError(`${ENV_INSTANCE_ID} is not set`);
  const secret = readSecret(env);
  const channel = env[ENV_CHANNEL] || "unix";
  const address = env[ENV_ADDRESS] ?? "";
  if (!address) throw new ConfigError(`${ENV_ADDRESS} is not set`);
  if (channel !== "unix" && channel !== "tcp") {
    throw new ConfigError(
      `channel type ${JSON.stringify(channel)} is not supported by the TypeScript SDK, which speaks unix and tcp; ` +
        "give the function channel type tcp (the agent's grpc strategy falls back to it)",
    );
  }
  const tls = tlsFromEnv(env);
  if (tls && channel !== "tcp") throw new ConfigError(`SPEAR_TLS_* is set for a ${channel} channel, which has no TLS`);
  return { instanceId, secret, channel, address, tls };
}

/** Reads the secret as configFromEnv documents. */
export function readSecret(env: NodeJS.ProcessEnv): Secret {
  const fd = env[ENV_SECRET_FD] ?? "";
  const path = env[ENV_SECRET_FILE] ?? "";
  let raw: string;
  let source: string;
  if (fd) {
    raw = readFd(fd);
    source = ENV_SECRET_FD;
  } else if (path) {
    try {
      raw = readFileSync(path, "latin1");
    } catch (e) {
      throw new ConfigError(`${ENV_SECRET_FILE}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
    source = ENV_SECRET_FILE;
  } else if (env[ENV_SECRET]) {
    raw = env[ENV_SECRET]!;
    source = ENV_SECRET;
  } else {
    throw new ConfigError(`no secret: set ${ENV_SECRET_FD}, ${ENV_SECRET_FILE} or ${ENV_SECRET}`);
  }
  delete env[ENV_SECRET];
  delete env[ENV_SECRET_FD];
  const hex = raw.trim();
  // The value itself is never quoted: it may be the secret.
  if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw new ConfigError(`${source} does not hold a hex-encoded secret`);
  return new Secret(Buffer.from(hex, "hex"));
}

function readFd(value: string): string {
  const fd = Number(value);
  if (!Number.isInteger(fd) || fd < 0) throw new ConfigError(`${ENV_SECRET_FD} is not a file descriptor number: ${JSON.stringify(value)}`);
  try {
    return readFileSync(fd, "latin1");
  } catch (e) {
    throw new ConfigError(`${ENV_SECRET_FD}: descriptor ${fd}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  } finally {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
  }
}
