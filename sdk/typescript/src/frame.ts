// Framing (docs/protocol.md, section 4): a 16-byte big-endian header, then
// the payload.

import { Code, ProtocolError } from "./errors.js";

export const VERSION = 1;
export const HEADER_SIZE = 16;
/** The default limit on payloads received: 16 MiB. */
export const DEFAULT_MAX_PAYLOAD = 16 << 20;

/** Message types (section 6). */
export enum Type {
  AUTH_CHALLENGE = 1,
  AUTH_REQUEST = 2,
  AUTH_RESPONSE = 3,
  EXECUTE_REQUEST = 4,
  EXECUTE_RESPONSE = 5,
  STREAM_DATA = 6,
  SIGNAL = 7,
  HEARTBEAT = 8,
  ERROR = 9,
  CANCEL = 10,
  CLOSE = 11,
  MESSAGE = 12,
}

/** Flag bits (section 7). */
export const Flag = { END: 0x0001, ACK: 0x0002, STREAM: 0x0004, SPLIT: 0x0008 } as const;

/** One frame. Request ids are 64-bit, so they are bigints. */
export interface Frame {
  type: number;
  flags: number;
  id: bigint;
  payload: Buffer;
}

/** Encodes a frame header for a payload of length bytes. */
export function header(type: number, flags: number, id: bigint, length: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_SIZE);
  h.writeUInt32BE(length, 0);
  h.writeUInt8(VERSION, 4);
  h.writeUInt8(type, 5);
  h.writeUInt16BE(flags, 6);
  h.writeBigUInt64BE(id, 8);
  return h;
}

/** Encodes a whole frame. */
export function encode(type: number, flags: number, id: bigint, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  return Buffer.concat([header(type, flags, id, payload.length), payload]);
}

/** A frame the receiver refuses: code says which ERROR to send before closing (section 17). */
export class FrameError extends ProtocolError {}

/**
 * Splits a byte stream into frames. It checks each header, in the protocol's
 * order (version, length, type), before it keeps any of the payload, so a
 * peer cannot make it buffer more than the limit.
 */
export class FrameParser {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private head: { type: number; flags: number; id: bigint; length: number } | undefined;

  constructor(private readonly maxPayload: number) {}

  /** Adds bytes and returns the frames now complete; throws FrameError for a frame to refuse. */
  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Frame[] = [];
    for (;;) {
      if (this.head === undefined) {
        if (this.buffered < HEADER_SIZE) return out;
        this.head = parseHeader(this.take(HEADER_SIZE), this.maxPayload);
      }
      if (this.buffered < this.head.length) return out;
      const payload = this.head.length ? this.take(this.head.length) : Buffer.alloc(0);
      out.push({ type: this.head.type, flags: this.head.flags, id: this.head.id, payload });
      this.head = undefined;
    }
  }

  /** Whether the stream stopped inside a frame. */
  get partial(): boolean {
    return this.buffered > 0 || this.head !== undefined;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

/** Checks and decodes a header. */
export function parseHeader(h: Buffer, maxPayload: number): { type: number; flags: number; id: bigint; length: number } {
  const length = h.readUInt32BE(0);
  const version = h.readUInt8(4);
  const type = h.readUInt8(5);
  if (version !== VERSION) {
    throw new FrameError(Code.UNSUPPORTED_VERSION, `protocol version ${version} is not supported; this instance speaks ${VERSION}`);
  }
  if (length > maxPayload) {
    throw new FrameError(Code.TOO_LARGE, `frame payload of ${length} bytes exceeds the limit of ${maxPayload}`);
  }
  if (type < Type.AUTH_CHALLENGE || type > Type.MESSAGE) {
    throw new FrameError(Code.INVALID_MESSAGE, `unknown message type ${type}`);
  }
  return { type, flags: h.readUInt16BE(6), id: h.readBigUInt64BE(8), length };
}
