// TLS on a tcp channel (docs/protocol.md, "TLS"), with node:tls: the agent is
// checked by a pin or a CA, and in mutual mode the instance presents the
// certificate the agent issued it, whose Ed25519 key it derives from its
// secret.

import { createHash, createPrivateKey, hkdfSync, timingSafeEqual } from "node:crypto";
import { type ConnectionOptions, type TLSSocket } from "node:tls";

import { AuthFailedError, ConfigError } from "./errors.js";

export const ENV_TLS_PIN = "SPEAR_TLS_PIN";
export const ENV_TLS_CA = "SPEAR_TLS_CA";
export const ENV_TLS_SERVER_NAME = "SPEAR_TLS_SERVER_NAME";
export const ENV_TLS_CERT = "SPEAR_TLS_CERT";

/** HKDF info of the client key. */
export const CLIENT_KEY_INFO = "spear-tls-client-key-v1";

/** PKCS#8 for an Ed25519 private key (RFC 8410) is this prefix and the seed. */
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");

/**
 * How to reach the agent over TLS: check it by pin (hex SHA-256 of its
 * certificate) or by CA and server name; cert is the instance's client
 * certificate in mutual mode.
 */
export interface TLSConfig {
  pin: string;
  ca: string;
  serverName: string;
  cert: string;
}

/** The mutual-TLS key's Ed25519 seed: HKDF-SHA256 of the secret, no salt, info "spear-tls-client-key-v1", 32 bytes. */
export function clientKeySeed(secret: Uint8Array): Buffer {
  return Buffer.from(hkdfSync("sha256", secret, Buffer.alloc(0), CLIENT_KEY_INFO, 32));
}

/** The mutual-TLS private key, PEM-encoded PKCS#8. */
export function clientKeyPem(secret: Uint8Array): string {
  const der = Buffer.concat([PKCS8_ED25519, clientKeySeed(secret)]);
  return createPrivateKey({ key: der, format: "der", type: "pkcs8" }).export({ format: "pem", type: "pkcs8" }).toString();
}

/** Reads the SPEAR_TLS_* variables; undefined when the channel has no TLS. */
export function tlsFromEnv(env: NodeJS.ProcessEnv): TLSConfig | undefined {
  const t: TLSConfig = {
    pin: env[ENV_TLS_PIN] ?? "",
    ca: env[ENV_TLS_CA] ?? "",
    serverName: env[ENV_TLS_SERVER_NAME] ?? "",
    cert: env[ENV_TLS_CERT] ?? "",
  };
  if (!t.pin && !t.ca) return undefined;
  if (t.pin && !/^[0-9a-fA-F]{64}$/.test(t.pin)) throw new ConfigError(`${ENV_TLS_PIN} is not a hex SHA-256`);
  return t;
}

/**
 * The options of tls.connect for host: TLS 1.3; with a pin, no chain or name
 * check (checkPin does the check once connected); with a CA, both.
 */
export function tlsOptions(t: TLSConfig, secret: Uint8Array, host: string): ConnectionOptions {
  const opts: ConnectionOptions = { minVersion: "TLSv1.3" };
  if (t.pin) {
    opts.rejectUnauthorized = false;
  } else {
    opts.ca = t.ca;
    opts.servername = t.serverName || host;
  }
  if (t.cert) {
    opts.cert = t.cert;
    opts.key = clientKeyPem(secret);
  }
  return opts;
}

/** Refuses a connection whose agent is not the pinned certificate, before anything is sent on it. */
export function checkPin(t: TLSConfig, socket: TLSSocket): void {
  if (!t.pin) return;
  const raw = socket.getPeerCertificate()?.raw;
  const want = Buffer.from(t.pin, "hex");
  if (!raw || !timingSafeEqual(createHash("sha256").update(raw).digest(), want)) {
    throw new AuthFailedError(`the agent's TLS certificate does not match ${ENV_TLS_PIN}`);
  }
}
