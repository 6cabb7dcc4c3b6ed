// The instance against a minimal agent (test/agent.ts).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { Flag, Type } from "../src/frame.js";
import { AuthFailedError, Code, Instance, type InstanceOptions, type Logger, type Request, type Signal, SignalKind, SpearError } from "../src/index.js";
import * as pb from "../src/proto.js";
import { type AgentOptions, FakeAgent } from "./agent.js";

const quiet: Logger = { log() {} };
const aborted: unknown[] = [];

const handlers = {
  echo: (req: Request) => `${req.method}:${req.text}`,
  chunks: async (req: Request) => {
    for (const word of req.text.split(" ")) {
      req.write(word);
      await req.drain();
    }
    return "end";
  },
  wait: async (req: Request) => {
    req.write("started");
    try {
      await sleep(60_000, undefined, { signal: req.signal });
    } catch (e) {
      aborted.push((req.signal.reason as SpearError).code);
      throw e;
    }
  },
  fails: () => {
    throw new RangeError("broken handler");
  },
  refuses: async () => {
    throw new SpearError(Code.NOT_FOUND, "no such thing");
  },
  big: (req: Request) => Buffer.alloc(Number(req.text), "x"),
  "bad-result": () => 42 as unknown as string,
};

let agent: FakeAgent;
const running: { inst: Instance; served: Promise<void> }[] = [];

before(async () => {
  agent = await new FakeAgent().listen();
});

after(async () => {
  for (const r of running) {
    r.inst.stop();
    await r.served.catch(() => {});
  }
  await agent.close();
});

function start(options: Partial<InstanceOptions> = {}, on: FakeAgent = agent, h: object = handlers) {
  const inst = new Instance(h as never, { config: on.config(), logger: quiet, minBackoffMs: 10, maxBackoffMs: 50, ...options });
  const served = inst.serve();
  served.catch(() => {});
  running.push({ inst, served });
  return { inst, served };
}

async function withAgent(opts: AgentOptions, fn: (a: FakeAgent) => Promise<void>): Promise<void> {
  const a = await new FakeAgent(opts).listen();
  try {
    await fn(a);
  } finally {
    for (const r of running.splice(0)) {
      r.inst.stop();
      await r.served.catch(() => {});
    }
    await a.close();
  }
}

const errorCode = (f: { payload: Buffer }) => pb.decodeError(f.payload).code;

test("requests and errors", async () => {
  start();
  const conn = await agent.accept();
  assert.equal((await conn.call("echo", "hi")).toString(), "echo:hi");
  for (const [method, code, text] of [
    ["refuses", Code.NOT_FOUND, "no such thing"],
    ["fails", Code.INTERNAL, "RangeError: broken handler"],
    ["nope", Code.NOT_FOUND, 'no method "nope"'],
    ["bad-result", Code.INTERNAL, "not number"],
  ] as const) {
    const f = await conn.answer(conn.execute(method));
    assert.equal(f.type, Type.ERROR, method);
    const e = pb.decodeError(f.payload);
    assert.equal(e.code, code, method);
    assert.ok(e.message.includes(text), e.message);
  }
  // A request id in use is refused; the first request is unaffected.
  conn.send(Type.EXECUTE_REQUEST, 0, 101n, pb.encodeExecuteRequest({ method: "wait" }));
  conn.send(Type.EXECUTE_REQUEST, 0, 101n, pb.encodeExecuteRequest({ method: "echo" }));
  assert.equal(errorCode(await conn.answer(101n)), Code.INVALID_MESSAGE);
  conn.send(Type.CANCEL, 0, 101n);
  assert.equal(errorCode(await conn.answer(101n)), Code.CANCELED);
});

test("split layout", async () => {
  // The SDK announces the split layout, reads split requests and answers
  // them split: the payload after a 4-byte envelope length.
  start();
  const conn = await agent.accept();
  assert.deepEqual(conn.features, [pb.FEATURE_SPLIT]);
  const id = conn.nextId;
  conn.nextId += 2n;
  conn.send(Type.EXECUTE_REQUEST, Flag.SPLIT, id, pb.encodeExecuteRequestSplit({ method: "echo", payload: Buffer.from("split"), timeoutMs: 5000 }));
  let f = await conn.answer(id);
  assert.deepEqual([f.type, f.flags & Flag.SPLIT], [Type.EXECUTE_RESPONSE, Flag.SPLIT]);
  assert.deepEqual(pb.decodeExecuteResponseSplit(f.payload).payload, Buffer.from("echo:split"));
  // An unsplit request still gets an unsplit answer.
  f = await conn.answer(conn.execute("echo", "old"));
  assert.equal(f.flags & Flag.SPLIT, 0);
  assert.equal(pb.decodeExecuteResponse(f.payload).payload.toString(), "echo:old");
});

test("concurrent requests are answered by id", async () => {
  start();
  const conn = await agent.accept();
  const slow = conn.execute("wait", "", Flag.STREAM);
  assert.equal((await conn.answer(slow)).payload.toString(), "started");
  const fast = conn.execute("echo", "fast");
  const f = await conn.recv();
  assert.deepEqual([f!.id, pb.decodeExecuteResponse(f!.payload).payload.toString()], [fast, "echo:fast"]);
  conn.send(Type.CANCEL, 0, slow);
  assert.equal(errorCode(await conn.answer(slow)), Code.CANCELED);
});

test("streaming", async () => {
  start();
  const conn = await agent.accept();
  const id = conn.execute("chunks", "a b c", Flag.STREAM);
  const got = [];
  for (;;) {
    const f = await conn.answer(id);
    assert.equal(f.type, Type.STREAM_DATA);
    got.push(f.payload.toString());
    if (f.flags & Flag.END) break;
  }
  assert.deepEqual(got, ["a", "b", "c", "end"]);
  // Without STREAM, the chunks are gathered ahead of the result.
  assert.equal((await conn.call("chunks", "a b c")).toString(), "abcend");
});

test("cancel and deadline abort the handler's signal", async () => {
  start();
  const conn = await agent.accept();
  const id = conn.execute("wait", "", Flag.STREAM);
  assert.equal((await conn.answer(id)).payload.toString(), "started");
  conn.send(Type.CANCEL, 0, id);
  assert.equal(errorCode(await conn.answer(id)), Code.CANCELED);
  assert.equal(errorCode(await conn.answer(conn.execute("wait", "", 0, 50))), Code.DEADLINE_EXCEEDED);
  await sleep(20);
  assert.deepEqual(aborted.slice(-2), [Code.CANCELED, Code.DEADLINE_EXCEEDED]);
  conn.send(Type.CANCEL, 0, 999n); // not running: ignored
  assert.equal((await conn.call("echo", "after")).toString(), "echo:after");
});

test("payload limit", () =>
  withAgent({ maxPayload: 1000 }, async (a) => {
    start({ config: a.config() }, a);
    const conn = await a.accept();
    // 997 bytes: a 1000-byte EXECUTE_RESPONSE, exactly the limit.
    assert.equal((await conn.call("big", "997")).length, 997);
    const f = await conn.answer(conn.execute("big", "998"));
    assert.equal(errorCode(f), Code.TOO_LARGE);
    assert.ok(pb.decodeError(f.payload).message.includes("over the agent's limit of 1000"));
    assert.equal(errorCode(await conn.answer(conn.execute("big", "1001", Flag.STREAM))), Code.TOO_LARGE);
    assert.equal((await conn.call("echo", "still here")).toString(), "echo:still here");
  }));

test("bad frames from the agent are refused, then the instance reconnects", async () => {
  start({ maxPayload: 100 });
  const cases: [Buffer, Code][] = [
    [Buffer.concat([Buffer.from([0, 0, 0, 101, 1, 4]), Buffer.alloc(10)]), Code.TOO_LARGE],
    [Buffer.concat([Buffer.from([0, 0, 0, 0, 2, 4]), Buffer.alloc(10)]), Code.UNSUPPORTED_VERSION],
    [Buffer.concat([Buffer.from([0, 0, 0, 0, 1, 99]), Buffer.alloc(10)]), Code.INVALID_MESSAGE],
    [Buffer.concat([Buffer.from([0, 0, 0, 0, 1, 1]), Buffer.alloc(10)]), Code.INVALID_MESSAGE],
  ];
  for (const [raw, code] of cases) {
    const conn = await agent.accept();
    conn.socket.write(raw);
    const seen = await conn.closed();
    assert.deepEqual(seen.filter((f) => f.type === Type.ERROR).map(errorCode), [code]);
  }
  const conn = await agent.accept();
  assert.equal((await conn.call("echo", "again")).toString(), "echo:again");
});

test("heartbeats", () =>
  withAgent({ heartbeatMs: 50 }, async (a) => {
    start({ config: a.config() }, a);
    const conn = await a.accept();
    conn.send(Type.HEARTBEAT, 0, 7n, Buffer.from("ping"));
    let f = (await conn.recv(false))!;
    assert.deepEqual([f.type, f.flags, f.id, f.payload.toString()], [Type.HEARTBEAT, Flag.ACK, 7n, "ping"]);
    // An idle agent is probed; one that never answers is left.
    f = (await conn.recv(false))!;
    assert.deepEqual([f.type, f.flags], [Type.HEARTBEAT, 0]);
    await conn.closed(false);
    const again = await a.accept();
    assert.equal((await again.call("echo", "back")).toString(), "echo:back");
  }));

test("signals", async () => {
  const seen: Signal[] = [];
  start({
    onSignal: (s) => {
      seen.push(s);
      if (s.kind === SignalKind.CUSTOM && s.name !== "reload") throw new SpearError(Code.NOT_FOUND, "unknown signal");
    },
  });
  const conn = await agent.accept();
  assert.equal((await conn.answer(conn.signal(SignalKind.PAUSE))).type, Type.EXECUTE_RESPONSE);
  assert.equal(errorCode(await conn.answer(conn.execute("echo"))), Code.UNAVAILABLE);
  assert.equal((await conn.answer(conn.signal(SignalKind.RESUME))).type, Type.EXECUTE_RESPONSE);
  assert.equal((await conn.call("echo", "x")).toString(), "echo:x");
  assert.equal((await conn.answer(conn.signal(SignalKind.CUSTOM, "reload", Buffer.from("d")))).type, Type.EXECUTE_RESPONSE);
  assert.equal(errorCode(await conn.answer(conn.signal(SignalKind.CUSTOM, "other"))), Code.NOT_FOUND);
  assert.deepEqual(
    seen.map((s) => [s.kind, s.name]),
    [[SignalKind.PAUSE, ""], [SignalKind.RESUME, ""], [SignalKind.CUSTOM, "reload"], [SignalKind.CUSTOM, "other"]],
  );
});

test("an unhandled custom signal is NOT_FOUND", async () => {
  start();
  const conn = await agent.accept();
  assert.equal(errorCode(await conn.answer(conn.signal(SignalKind.CUSTOM, "x"))), Code.NOT_FOUND);
});

test("terminate drains, then closes", async () => {
  const { served } = start();
  const conn = await agent.accept();
  const id = conn.execute("wait", "", Flag.STREAM);
  assert.equal((await conn.answer(id)).payload.toString(), "started");
  assert.equal((await conn.answer(conn.signal(SignalKind.TERMINATE))).type, Type.EXECUTE_RESPONSE);
  assert.equal(errorCode(await conn.answer(conn.execute("echo"))), Code.UNAVAILABLE);
  conn.send(Type.CANCEL, 0, id);
  const seen = await conn.closed();
  assert.equal(seen.at(-1)!.type, Type.CLOSE);
  await served; // no reconnecting
});

test("reconnects after a drop and after CLOSE", async () => {
  start();
  let conn = await agent.accept();
  conn.socket.destroy();
  conn = await agent.accept();
  assert.equal((await conn.call("echo", "1")).toString(), "echo:1");
  conn.send(Type.CLOSE, 0, 0n, pb.encodeError(Code.UNAVAILABLE, "bye"));
  conn.socket.end();
  conn = await agent.accept();
  assert.equal((await conn.call("echo", "2")).toString(), "echo:2");
});

test("a wrong agent proof is final", () =>
  withAgent({ forge: true }, async (a) => {
    const { served } = start({ config: a.config() }, a);
    const conn = await a.accept();
    conn.execute("echo", "must not be served");
    assert.deepEqual(await conn.closed(), []);
    await assert.rejects(served, AuthFailedError);
  }));

test("a wrong secret is final", async () => {
  const inst = new Instance(handlers, { config: agent.config(Buffer.alloc(32, 1)), logger: quiet, minBackoffMs: 10 });
  await assert.rejects(inst.serve(), AuthFailedError);
  assert.equal(agent.failures, 1);
});

test("stop says goodbye", async () => {
  const { inst, served } = start();
  const conn = await agent.accept();
  inst.stop();
  const seen = await conn.closed();
  assert.deepEqual(seen.map((f) => [f.type, pb.decodeError(f.payload)]), [[Type.CLOSE, { code: Code.UNAVAILABLE, message: "instance shutting down" }]]);
  await served;
});

test("messages both ways", async () => {
  const got: string[] = [];
  const { inst } = start({ onMessage: (p) => got.push(p.toString()) });
  const conn = await agent.accept();
  while (!inst.connected) await sleep(5);
  conn.send(Type.MESSAGE, 0, 0n, Buffer.from("to instance"));
  inst.sendMessage("to agent");
  const f = (await conn.recv())!;
  assert.deepEqual([f.type, f.payload.toString()], [Type.MESSAGE, "to agent"]);
  await conn.call("echo");
  assert.deepEqual(got, ["to instance"]);
});
