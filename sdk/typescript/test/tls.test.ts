import assert from "node:assert/strict";
import { createHash, createPrivateKey, createPublicKey } from "node:crypto";
import { test } from "node:test";
import { type TLSSocket } from "node:tls";

import { AuthFailedError, ConfigError, configFromEnv } from "../src/index.js";
import { checkPin, clientKeyPem, clientKeySeed, tlsOptions } from "../src/tls.js";

function base(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { SPEAR_INSTANCE_ID: "process:fn-1", SPEAR_CHANNEL: "tcp", SPEAR_ADDRESS: "127.0.0.1:1", SPEAR_SECRET: "00ff", ...extra };
}

test("the client key is derived from the secret (docs/protocol.md's vector)", () => {
  const secret = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
  assert.equal(clientKeySeed(secret).toString("hex"), "b5636f9c45f8b477b50d20be9f4a667935e5060fa78c149012d901a900f9ef5d");
  const pub = createPublicKey(createPrivateKey(clientKeyPem(secret))).export({ format: "der", type: "spki" });
  assert.equal(pub.subarray(-32).toString("hex"), "8657c19355be9f9eda93335916e424d77b55fc13537a59125d7969ef13bbf048");
});

test("TLS from the environment", () => {
  assert.equal(configFromEnv(base()).tls, undefined);
  const pin = "ab".repeat(32);
  const cfg = configFromEnv(base({ SPEAR_TLS_PIN: pin, SPEAR_TLS_CERT: "CERT" }));
  assert.deepEqual(cfg.tls, { pin, ca: "", serverName: "", cert: "CERT" });
  assert.throws(() => configFromEnv(base({ SPEAR_TLS_PIN: "not hex" })), ConfigError);
  assert.throws(() => configFromEnv(base({ SPEAR_CHANNEL: "unix", SPEAR_ADDRESS: "/tmp/s", SPEAR_TLS_PIN: pin })), ConfigError);
  const opts = tlsOptions({ pin: "", ca: "CA", serverName: "", cert: "" }, Buffer.alloc(1), "10.0.0.1");
  assert.equal(opts.servername, "10.0.0.1");
  assert.notEqual(opts.rejectUnauthorized, false); // a CA is checked, with the name
});

test("only the pinned certificate is accepted", () => {
  const der = Buffer.from("the agent's certificate");
  const t = { pin: createHash("sha256").update(der).digest("hex"), ca: "", serverName: "", cert: "" };
  const socket = (raw: Buffer | undefined) => ({ getPeerCertificate: () => (raw ? { raw } : {}) }) as unknown as TLSSocket;
  checkPin(t, socket(der));
  assert.throws(() => checkPin(t, socket(Buffer.from("another"))), AuthFailedError);
  assert.throws(() => checkPin(t, socket(undefined)), AuthFailedError);
});
