import assert from "node:assert/strict";
import { fstatSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { inspect } from "node:util";

import { ConfigError, configFromEnv } from "../src/index.js";

const SECRET = "00112233445566778899aabbccddeeff";

function base(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { SPEAR_INSTANCE_ID: "process:fn-1", SPEAR_CHANNEL: "unix", SPEAR_ADDRESS: "/tmp/x.sock", ...extra };
}

/** A descriptor to a file holding text (a pipe in production; any fd reads the same). */
function fdHolding(dir: string, text: string): number {
  const path = join(dir, `fd-${Math.random()}`);
  writeFileSync(path, text);
  return openSync(path, "r");
}

test("secret hand-off: descriptor, then file, then environment", () => {
  const dir = mkdtempSync(join(tmpdir(), "spear-cfg-"));
  try {
    const file = join(dir, "secret");
    writeFileSync(file, "ff".repeat(16));
    const fd = fdHolding(dir, `  ${SECRET}\n`);
    const env = base({ SPEAR_SECRET_FD: String(fd), SPEAR_SECRET_FILE: file, SPEAR_SECRET: "ee".repeat(16) });
    assert.equal(configFromEnv(env).secret.reveal().toString("hex"), SECRET);
    assert.throws(() => fstatSync(fd), /EBADF/); // closed once read
    assert.equal(env.SPEAR_SECRET, undefined);
    assert.equal(env.SPEAR_SECRET_FD, undefined);

    writeFileSync(file, `\n${SECRET}\n\n`);
    assert.equal(configFromEnv(base({ SPEAR_SECRET_FILE: file, SPEAR_SECRET: "ee".repeat(16) })).secret.reveal().toString("hex"), SECRET);
    assert.equal(configFromEnv(base({ SPEAR_SECRET: SECRET })).secret.reveal().toString("hex"), SECRET);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test("errors never quote the secret", () => {
  const dir = mkdtempSync(join(tmpdir(), "spear-cfg-"));
  try {
    const leaky = `not-hex-${SECRET}`;
    for (const env of [base({ SPEAR_SECRET: leaky }), base({ SPEAR_SECRET_FD: String(fdHolding(dir, leaky)) })]) {
      assert.throws(() => configFromEnv(env), (e: unknown) => e instanceof ConfigError && !e.message.includes(SECRET));
    }
    for (const env of [base(), base({ SPEAR_SECRET_FILE: "/nonexistent/secret" }), base({ SPEAR_SECRET_FD: "x" }), base({ SPEAR_SECRET: " " })]) {
      assert.throws(() => configFromEnv(env), ConfigError);
    }
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test("the secret never prints", () => {
  const cfg = configFromEnv(base({ SPEAR_SECRET: SECRET }));
  for (const text of [inspect(cfg), JSON.stringify(cfg), String(cfg.secret), `${cfg.secret}`]) {
    assert.ok(!text.includes(SECRET), text);
    assert.ok(text.includes("redacted"), text);
  }
});

test("environment", () => {
  assert.throws(() => configFromEnv(base({ SPEAR_SECRET: SECRET, SPEAR_INSTANCE_ID: "" })), ConfigError);
  assert.throws(() => configFromEnv(base({ SPEAR_SECRET: SECRET, SPEAR_ADDRESS: "" })), ConfigError);
  assert.throws(() => configFromEnv(base({ SPEAR_SECRET: SECRET, SPEAR_CHANNEL: "grpc" })), /tcp/);
  const cfg = configFromEnv(base({ SPEAR_SECRET: SECRET, SPEAR_CHANNEL: "tcp", SPEAR_ADDRESS: "127.0.0.1:9" }));
  assert.deepEqual([cfg.channel, cfg.address], ["tcp", "127.0.0.1:9"]);
});

