// The hand-written encoders against the Go implementation's vectors
// (conformance/testdata/vectors.json) and docs/protocol.md's examples.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { ROLE_AGENT, ROLE_INSTANCE, proof } from "../src/auth.js";
import { Code, ProtocolError } from "../src/errors.js";
import { Flag, FrameError, FrameParser, HEADER_SIZE, encode, parseHeader } from "../src/frame.js";
import * as pb from "../src/proto.js";

// dist/test -> the repository's conformance/testdata.
const here = dirname(fileURLToPath(import.meta.url));
const vectors = JSON.parse(readFileSync(join(here, "..", "..", "..", "..", "conformance", "testdata", "vectors.json"), "utf8"));

type Vector = { name: string; type: number; flags: number; id: number; message: Record<string, any>; frame: string };
const frames = new Map<string, Vector>(vectors.frames.map((f: Vector) => [f.name, f]));

function frame(name: string): { v: Vector; raw: Buffer; payload: Buffer } {
  const v = frames.get(name)!;
  const raw = Buffer.from(v.frame, "hex");
  const h = parseHeader(raw.subarray(0, HEADER_SIZE), 1 << 24);
  assert.deepEqual([h.type, h.flags, Number(h.id), h.length], [v.type, v.flags, v.id, raw.length - HEADER_SIZE], name);
  return { v, raw, payload: raw.subarray(HEADER_SIZE) };
}

const hex = (s: string) => Buffer.from(s, "hex");

test("proofs", () => {
  const h = vectors.handshake;
  const args = [hex(h.nonce), hex(h.client_nonce), h.instance_id] as const;
  assert.equal(proof(hex(h.secret), ROLE_INSTANCE, ...args).toString("hex"), h.proof);
  assert.equal(proof(hex(h.secret), ROLE_AGENT, ...args).toString("hex"), h.server_proof);
});

test("auth frames", () => {
  let { v, raw, payload } = frame("auth_challenge");
  const ch = pb.decodeAuthChallenge(payload);
  assert.deepEqual([ch.nonce.toString("hex"), ch.versions], [v.message.nonce, [1]]);

  ({ v, raw } = frame("auth_request"));
  const m = v.message;
  assert.deepEqual(encode(v.type, 0, 0n, pb.encodeAuthRequest(m.instance_id, hex(m.client_nonce), hex(m.proof))), raw);

  ({ v, raw } = frame("auth_request_features"));
  const mf = v.message;
  assert.deepEqual(mf.features, [pb.FEATURE_SPLIT]);
  assert.deepEqual(encode(v.type, 0, 0n, pb.encodeAuthRequest(mf.instance_id, hex(mf.client_nonce), hex(mf.proof), mf.features)), raw);

  ({ v, payload } = frame("auth_response"));
  const r = pb.decodeAuthResponse(payload);
  assert.deepEqual(
    [r.sessionId, r.features, r.serverProof.toString("hex"), r.heartbeatIntervalMs, r.maxPayload],
    [v.message.session_id, v.message.features, v.message.server_proof, v.message.heartbeat_interval_ms, v.message.max_payload],
  );
});

test("execute frames", () => {
  for (const name of ["execute_request", "execute_request_empty"]) {
    const { v, payload } = frame(name);
    const r = pb.decodeExecuteRequest(payload);
    assert.deepEqual([r.method, r.payload.toString("hex"), r.timeoutMs, r.metadata], [v.message.method, v.message.payload, v.message.timeout_ms, v.message.metadata]);
    assert.deepEqual(pb.encodeExecuteRequest(r), payload, name);
  }
  for (const name of ["execute_response", "execute_response_empty"]) {
    const { v, raw, payload } = frame(name);
    const r = pb.decodeExecuteResponse(payload);
    assert.deepEqual([r.payload.toString("hex"), r.metadata], [v.message.payload, v.message.metadata]);
    assert.deepEqual(encode(v.type, v.flags, BigInt(v.id), pb.encodeExecuteResponse(r.payload, r.metadata)), raw, name);
    if (Object.keys(r.metadata).length === 0) assert.equal(pb.executeResponseSize(r.payload.length), payload.length);
  }
});

test("execute frames, split", () => {
  let { v, raw, payload } = frame("execute_request_split");
  assert.equal(v.flags, Flag.SPLIT);
  const r = pb.decodeExecuteRequestSplit(payload);
  assert.deepEqual([r.method, r.payload.toString("hex"), r.timeoutMs, r.metadata], [v.message.method, v.message.payload, v.message.timeout_ms, v.message.metadata]);
  assert.deepEqual(encode(v.type, v.flags, BigInt(v.id), pb.encodeExecuteRequestSplit(r)), raw);
  ({ v, raw, payload } = frame("execute_response_split"));
  const a = pb.decodeExecuteResponseSplit(payload);
  assert.deepEqual([a.payload.toString("hex"), a.metadata], [v.message.payload, v.message.metadata]);
  assert.deepEqual(encode(v.type, v.flags, BigInt(v.id), Buffer.concat([pb.SPLIT_RESPONSE_HEADER, a.payload])), raw);
  assert.throws(() => pb.decodeExecuteRequestSplit(Buffer.from("00000009616263", "hex")), ProtocolError); // envelope longer than the payload
  assert.throws(() => pb.decodeExecuteRequestSplit(Buffer.from("00000003120178", "hex")), ProtocolError); // a payload field in the envelope
  for (const envelope of ["00000002" + "1200", "00000005" + "0a016d" + "1200"]) { // even an empty one, after another field
    assert.throws(() => pb.decodeExecuteRequestSplit(Buffer.from(envelope + "626f6479", "hex")), ProtocolError);
  }
  const empty = pb.decodeExecuteRequestSplit(Buffer.alloc(4)); // an empty envelope, an empty payload
  assert.deepEqual([empty.method, empty.payload.length, empty.timeoutMs, empty.metadata], ["", 0, 0, {}]);
});

test("control frames", () => {
  for (const name of ["signal_terminate", "signal_custom"]) {
    const { v, raw, payload } = frame(name);
    const s = pb.decodeSignal(payload);
    assert.deepEqual([s.kind, s.name, s.data.toString("hex")], [v.message.kind, v.message.name, v.message.data]);
    assert.deepEqual(encode(v.type, 0, BigInt(v.id), pb.encodeSignal(s.kind, s.name, s.data)), raw);
  }
  for (const [name, text] of [["error", "message"], ["close", "reason"]] as const) {
    const { v, raw, payload } = frame(name);
    const e = pb.decodeError(payload);
    assert.deepEqual([e.code, e.message], [v.message.code, v.message[text]]);
    assert.deepEqual(encode(v.type, 0, BigInt(v.id), pb.encodeError(e.code, e.message)), raw);
  }
  for (const name of ["stream_data_end", "heartbeat_ack", "cancel"]) {
    const v = frames.get(name)!;
    const raw = hex(v.frame);
    // Request ids are 64-bit: this one is over 2^53.
    const h = parseHeader(raw.subarray(0, HEADER_SIZE), 1 << 24);
    assert.equal(raw.subarray(HEADER_SIZE).toString("hex"), v.message.data ?? "");
    assert.deepEqual(encode(h.type, h.flags, h.id, raw.subarray(HEADER_SIZE)), raw);
  }
  // docs/protocol.md, section 4.
  assert.equal(encode(6, 0x0005, 0x0102030405060708n, Buffer.from("abc")).toString("hex"), "00000003" + "01" + "06" + "0005" + "0102030405060708" + "616263");
});

test("headers are checked in order, before the payload is kept", () => {
  const h = encode(99, 0, 0n).subarray(0, HEADER_SIZE);
  const cases: [Buffer, Code][] = [
    [Buffer.concat([Buffer.from([0, 0, 0, 0, 2]), h.subarray(5)]), Code.UNSUPPORTED_VERSION],
    [Buffer.concat([Buffer.from([0, 0, 0, 11]), h.subarray(4)]), Code.TOO_LARGE],
    [h, Code.INVALID_MESSAGE],
  ];
  for (const [header, code] of cases) {
    assert.throws(() => new FrameParser(10).push(header), (e: unknown) => e instanceof FrameError && e.code === code);
  }
  // Frames split anywhere come out whole.
  const stream = Buffer.concat([encode(6, 1, 7n, Buffer.from("hello")), encode(8, 0, 0n), encode(12, 0, 0n, Buffer.from("m"))]);
  const p = new FrameParser(100);
  const out = [];
  for (const b of stream) out.push(...p.push(Buffer.from([b])));
  assert.deepEqual(out.map((f) => [f.type, f.flags, f.id, f.payload.toString()]), [[6, 1, 7n, "hello"], [8, 0, 0n, ""], [12, 0, 0n, "m"]]);
  assert.equal(p.partial, false);
  p.push(encode(6, 0, 1n, Buffer.from("xy")).subarray(0, 17));
  assert.equal(p.partial, true);
});

test("malformed messages", () => {
  for (const bad of ["0a0561", "08", "0880808080808080808080", "0001", "0b"]) {
    assert.throws(() => pb.decodeExecuteRequest(hex(bad)), /varint|truncated|field number|wire type/, bad);
  }
  assert.throws(() => pb.decodeExecuteRequest(hex("0a02fffe")), /UTF-8/);
  // Fields of a later version, fixed64 and fixed32, are skipped.
  const extra = Buffer.concat([Buffer.from([(9 << 3) | 1]), Buffer.alloc(8), Buffer.from([(10 << 3) | 5]), Buffer.alloc(4)]);
  const r = pb.decodeExecuteRequest(Buffer.concat([pb.encodeExecuteRequest({ method: "m", payload: Buffer.from("p") }), extra]));
  assert.deepEqual([r.method, r.payload.toString()], ["m", "p"]);
  for (const n of [0, 1, 127, 128, 300, 16383, 16384, 2 ** 32 - 1, 2 ** 53 - 1]) {
    assert.equal(pb.varint(n).length, pb.varintSize(n));
    assert.equal(pb.decodeExecuteRequest(Buffer.concat([Buffer.from([3 << 3]), pb.varint(n)])).timeoutMs, n);
  }
});
