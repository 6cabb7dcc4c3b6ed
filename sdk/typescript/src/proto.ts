// The few protocol buffers messages of proto/spear/v1/spear.proto, by hand.
// Only wire types 0 (varint) and 2 (length-delimited) occur in them; fields
// of other types are skipped, as proto3 requires of unknown fields.
// Encoders write fields in field-number order and omit defaults, as the Go
// implementation does, so the bytes match its test vectors.

import { Code, ProtocolError } from "./errors.js";

/** Encodes a non-negative integer (below 2^53) as a varint. */
export function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Buffer.from(out);
}

/** The encoded size of a varint. */
export function varintSize(n: number): number {
  let size = 1;
  while (n > 0x7f) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

function readVarint(b: Uint8Array, i: number): [number, number] {
  let n = 0;
  let scale = 1;
  for (let k = 0; k < 10; k++) {
    if (i >= b.length) break;
    const c = b[i++]!;
    n += (c & 0x7f) * scale;
    if (c < 0x80) return [n, i];
    scale *= 0x80;
  }
  throw new ProtocolError(Code.INVALID_MESSAGE, "truncated or overlong varint");
}

/** A field of a message: a number for varints, bytes for length-delimited fields. */
export type Field = { num: number; value: number | Buffer };

/** The fields of a message, in order. */
export function fields(data: Uint8Array): Field[] {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const out: Field[] = [];
  let i = 0;
  while (i < b.length) {
    let key: number;
    [key, i] = readVarint(b, i);
    const num = Math.floor(key / 8);
    const typ = key % 8;
    if (num === 0) throw new ProtocolError(Code.INVALID_MESSAGE, "field number 0");
    if (typ === 0) {
      let v: number;
      [v, i] = readVarint(b, i);
      out.push({ num, value: v });
    } else if (typ === 2) {
      let n: number;
      [n, i] = readVarint(b, i);
      if (n > b.length - i) throw new ProtocolError(Code.INVALID_MESSAGE, "truncated field");
      out.push({ num, value: b.subarray(i, i + n) });
      i += n;
    } else if (typ === 1 || typ === 5) {
      i += typ === 1 ? 8 : 4;
      if (i > b.length) throw new ProtocolError(Code.INVALID_MESSAGE, "truncated field");
    } else {
      throw new ProtocolError(Code.INVALID_MESSAGE, `unsupported wire type ${typ}`);
    }
  }
  return out;
}

function bytesField(num: number, value: Uint8Array): Buffer {
  return Buffer.concat([varint(num * 8 + 2), varint(value.length), value]);
}

function stringField(num: number, value: string): Buffer {
  return bytesField(num, Buffer.from(value, "utf8"));
}

function varintField(num: number, value: number): Buffer {
  return Buffer.concat([varint(num * 8), varint(value)]);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function text(v: number | Buffer): string {
  if (typeof v === "number") throw new ProtocolError(Code.INVALID_MESSAGE, "expected a string field");
  try {
    return utf8.decode(v);
  } catch {
    throw new ProtocolError(Code.INVALID_MESSAGE, "string field is not UTF-8");
  }
}

function blob(v: number | Buffer): Buffer {
  if (typeof v === "number") throw new ProtocolError(Code.INVALID_MESSAGE, "expected a bytes field");
  return v;
}

function num(v: number | Buffer): number {
  if (typeof v !== "number") throw new ProtocolError(Code.INVALID_MESSAGE, "expected a varint field");
  return v;
}

/** spear.v1.AuthChallenge. */
export interface AuthChallenge {
  nonce: Buffer;
  versions: number[];
}

export function decodeAuthChallenge(b: Uint8Array): AuthChallenge {
  const out: AuthChallenge = { nonce: Buffer.alloc(0), versions: [] };
  for (const f of fields(b)) {
    if (f.num === 1) out.nonce = blob(f.value);
    else if (f.num === 2 && typeof f.value === "number") out.versions.push(f.value);
    else if (f.num === 2) {
      const packed = blob(f.value);
      for (let i = 0; i < packed.length; ) {
        let v: number;
        [v, i] = readVarint(packed, i);
        out.versions.push(v);
      }
    }
  }
  return out;
}

/** The optional protocol feature announcing that this SDK reads execute
 * requests in the split layout (docs/protocol.md, "Execute"). */
export const FEATURE_SPLIT = "split";

/** spear.v1.AuthRequest. */
export function encodeAuthRequest(instanceId: string, clientNonce: Uint8Array, proof: Uint8Array, features: readonly string[] = []): Buffer {
  return Buffer.concat([stringField(1, instanceId), bytesField(2, clientNonce), bytesField(3, proof), ...features.map((f) => bytesField(6, Buffer.from(f, "utf8")))]);
}

/** spear.v1.AuthResponse. */
export interface AuthResponse {
  sessionId: string;
  features: string[];
  serverProof: Buffer;
  heartbeatIntervalMs: number;
  maxPayload: number;
}

export function decodeAuthResponse(b: Uint8Array): AuthResponse {
  const out: AuthResponse = { sessionId: "", features: [], serverProof: Buffer.alloc(0), heartbeatIntervalMs: 0, maxPayload: 0 };
  for (const f of fields(b)) {
    switch (f.num) {
      case 1: out.sessionId = text(f.value); break;
      case 2: out.features.push(text(f.value)); break;
      case 3: out.serverProof = blob(f.value); break;
      case 4: out.heartbeatIntervalMs = num(f.value); break;
      case 5: out.maxPayload = num(f.value); break;
    }
  }
  return out;
}

/** spear.v1.ExecuteRequest. */
export interface ExecuteRequest {
  method: string;
  payload: Buffer;
  timeoutMs: number;
  metadata: Record<string, string>;
}

function mapEntry(v: number | Buffer): [string, string] {
  let key = "";
  let value = "";
  for (const f of fields(blob(v))) {
    if (f.num === 1) key = text(f.value);
    else if (f.num === 2) value = text(f.value);
  }
  return [key, value];
}

function encodeMap(field: number, m: Record<string, string> | undefined): Buffer[] {
  // Entries carry key and value even when empty, as Go's encoder writes
  // them; sorted, so that the bytes are deterministic.
  return Object.keys(m ?? {})
    .sort()
    .map((k) => bytesField(field, Buffer.concat([stringField(1, k), stringField(2, m![k]!)])));
}

export function decodeExecuteRequest(b: Uint8Array, body?: Buffer): ExecuteRequest {
  // body is the payload of the split layout, whose envelope b must then have
  // no payload field: one pass checks that and decodes the rest.
  const out: ExecuteRequest = { method: "", payload: body ?? Buffer.alloc(0), timeoutMs: 0, metadata: {} };
  for (const f of fields(b)) {
    switch (f.num) {
      case 1: out.method = text(f.value); break;
      case 2:
        if (body) throw new ProtocolError(Code.INVALID_MESSAGE, "split envelope has a payload field");
        out.payload = blob(f.value);
        break;
      case 3: out.timeoutMs = num(f.value); break;
      case 4: {
        const [k, v] = mapEntry(f.value);
        out.metadata[k] = v;
        break;
      }
    }
  }
  return out;
}

/** spear.v1.ExecuteRequest, for tests and tools acting as the agent. */
export function encodeExecuteRequest(r: Partial<ExecuteRequest>): Buffer {
  const parts: Buffer[] = [];
  if (r.method) parts.push(stringField(1, r.method));
  if (r.payload && r.payload.length) parts.push(bytesField(2, r.payload));
  if (r.timeoutMs) parts.push(varintField(3, r.timeoutMs));
  return Buffer.concat([...parts, ...encodeMap(4, r.metadata)]);
}

/** Cuts the payload of a SPLIT execute frame into its envelope (the
 * message without its payload field) and the payload's bytes. */
export function splitPayload(b: Uint8Array): { envelope: Buffer; body: Buffer } {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (buf.length < 4 || buf.readUInt32BE(0) > buf.length - 4) {
    throw new ProtocolError(Code.INVALID_MESSAGE, "split payload shorter than its envelope length");
  }
  const end = 4 + buf.readUInt32BE(0);
  return { envelope: buf.subarray(4, end), body: buf.subarray(end) };
}

/** An ExecuteRequest in the split layout; its payload is a view of b. */
export function decodeExecuteRequestSplit(b: Uint8Array): ExecuteRequest {
  const { envelope, body } = splitPayload(b);
  return decodeExecuteRequest(envelope, body);
}

/** spear.v1.ExecuteRequest in the split layout, for tests and tools acting as the agent. */
export function encodeExecuteRequestSplit(r: Partial<ExecuteRequest>): Buffer {
  const envelope = encodeExecuteRequest({ ...r, payload: undefined });
  const len = Buffer.alloc(4);
  len.writeUInt32BE(envelope.length);
  return Buffer.concat([len, envelope, r.payload ?? Buffer.alloc(0)]);
}

/** The envelope of a split ExecuteResponse without metadata: its length, 0. */
export const SPLIT_RESPONSE_HEADER: Buffer = Buffer.alloc(4);

/** An ExecuteResponse in the split layout. */
export function decodeExecuteResponseSplit(b: Uint8Array): { payload: Buffer; metadata: Record<string, string> } {
  const { envelope, body } = splitPayload(b);
  const out = decodeExecuteResponse(envelope);
  if (out.payload.length) throw new ProtocolError(Code.INVALID_MESSAGE, "split envelope has a payload field");
  return { payload: body, metadata: out.metadata };
}

/** The size of an ExecuteResponse carrying n payload bytes and no metadata. */
export function executeResponseSize(n: number): number {
  return n ? 1 + varintSize(n) + n : 0;
}

/** spear.v1.ExecuteResponse. */
export function encodeExecuteResponse(payload: Uint8Array, metadata?: Record<string, string>): Buffer {
  const head = payload.length ? Buffer.concat([varint(1 * 8 + 2), varint(payload.length)]) : Buffer.alloc(0);
  return Buffer.concat([head, payload, ...encodeMap(2, metadata)]);
}

export function decodeExecuteResponse(b: Uint8Array): { payload: Buffer; metadata: Record<string, string> } {
  const out: { payload: Buffer; metadata: Record<string, string> } = { payload: Buffer.alloc(0), metadata: {} };
  for (const f of fields(b)) {
    if (f.num === 1) out.payload = blob(f.value);
    else if (f.num === 2) {
      const [k, v] = mapEntry(f.value);
      out.metadata[k] = v;
    }
  }
  return out;
}

/** spear.v1.Signal. */
export interface SignalMessage {
  kind: number;
  name: string;
  data: Buffer;
}

export function decodeSignal(b: Uint8Array): SignalMessage {
  const out: SignalMessage = { kind: 0, name: "", data: Buffer.alloc(0) };
  for (const f of fields(b)) {
    if (f.num === 1) out.kind = num(f.value);
    else if (f.num === 2) out.name = text(f.value);
    else if (f.num === 3) out.data = blob(f.value);
  }
  return out;
}

export function encodeSignal(kind: number, name = "", data: Uint8Array = Buffer.alloc(0)): Buffer {
  const parts: Buffer[] = [];
  if (kind) parts.push(varintField(1, kind));
  if (name) parts.push(stringField(2, name));
  if (data.length) parts.push(bytesField(3, data));
  return Buffer.concat(parts);
}

/** spear.v1.Error, and spear.v1.Close, which has the same shape. */
export function encodeError(code: number, message: string): Buffer {
  const parts: Buffer[] = [];
  if (code) parts.push(varintField(1, code));
  if (message) parts.push(stringField(2, message));
  return Buffer.concat(parts);
}

/** Decodes spear.v1.Error or spear.v1.Close: its code and message (or reason). */
export function decodeError(b: Uint8Array): { code: number; message: string } {
  const out = { code: 0, message: "" };
  for (const f of fields(b)) {
    if (f.num === 1) out.code = num(f.value);
    else if (f.num === 2) out.message = text(f.value);
  }
  return out;
}
