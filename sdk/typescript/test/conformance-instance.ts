// The TypeScript SDK's conformance fixture: an instance serving the
// conformance handler contract (docs/conformance.md). Build, then run it
// under the conformance runner:
//
//   npm run build
//   spearlet conformance -- node sdk/typescript/dist/test/conformance-instance.js

import { setTimeout as sleep } from "node:timers/promises";

import { Code, type Request, SpearError, run } from "../src/index.js";

const WAITING = "waiting";
const MAX_WAIT_MS = 60_000;

let interrupted = 0;

function count(req: Request): number {
  const n = Number(req.text);
  if (!Number.isInteger(n) || n < 0) throw new SpearError(Code.INVALID_MESSAGE, `want a decimal count, not ${JSON.stringify(req.text)}`);
  return n;
}

/** Waits ms, or until the request is aborted: then counts it and throws why. */
async function wait(req: Request, ms: number): Promise<void> {
  try {
    await sleep(ms, undefined, { signal: req.signal });
  } catch (e) {
    if (!req.signal.aborted) throw e;
    interrupted++;
    throw req.signal.reason;
  }
}

run({
  echo: (req) => req.payload,
  stream: async (req) => {
    for (let i = 0; i < count(req); i++) {
      req.write(String(i));
      await req.drain();
    }
    return "done";
  },
  sleep: async (req) => {
    const ms = count(req);
    await wait(req, ms);
    return `slept ${ms}`;
  },
  "wait-cancel": async (req) => {
    req.write(WAITING);
    await wait(req, MAX_WAIT_MS);
    throw new SpearError(Code.INTERNAL, "wait-cancel was never cancelled");
  },
  interrupted: () => String(interrupted),
  big: (req) => Buffer.alloc(count(req), "x"),
});
