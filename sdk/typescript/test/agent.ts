// A minimal agent for the SDK's tests: it listens on a unix socket, runs the
// agent's side of the handshake, and lets a test send and read frames.

import { randomBytes, timingSafeEqual } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { type Server, type Socket, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { ROLE_AGENT, ROLE_INSTANCE, proof } from "../src/auth.js";
import { type Config, Secret } from "../src/config.js";
import { Flag, type Frame, FrameParser, Type, encode } from "../src/frame.js";
import * as pb from "../src/proto.js";

export const INSTANCE_ID = "process:test-1";
const TIMEOUT_MS = 10_000;

/** One accepted, authenticated connection. */
export class AgentConn {
  nextId = 1n;
  /** What the instance announced in its AUTH_REQUEST. */
  features: string[] = [];
  readonly #frames: Frame[] = [];
  #waiter: (() => void) | undefined;
  #closed = false;

  constructor(
    readonly socket: Socket,
    parser: FrameParser,
    pending: Frame[],
  ) {
    this.#frames.push(...pending);
    socket.on("data", (chunk: Buffer) => {
      this.#frames.push(...parser.push(chunk));
      this.#waiter?.();
    });
    socket.on("close", () => {
      this.#closed = true;
      this.#waiter?.();
    });
    socket.on("error", () => {});
  }

  send(type: number, flags = 0, id = 0n, payload: Buffer = Buffer.alloc(0)): void {
    this.socket.write(encode(type, flags, id, payload));
  }

  /** The next frame; the instance's heartbeat probes are answered and skipped unless told otherwise. Null once closed. */
  async recv(skipProbes = true): Promise<Frame | null> {
    const deadline = Date.now() + TIMEOUT_MS;
    for (;;) {
      const f = this.#frames.shift();
      if (f) {
        if (skipProbes && f.type === Type.HEARTBEAT && !(f.flags & Flag.ACK)) {
          this.send(Type.HEARTBEAT, Flag.ACK, f.id, f.payload);
          continue;
        }
        return f;
      }
      if (this.#closed) return null;
      if (Date.now() > deadline) throw new Error("timed out waiting for a frame");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.#waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  execute(method: string, payload: Buffer | string = "", flags = 0, timeoutMs = 0): bigint {
    const id = this.nextId;
    this.nextId += 2n;
    this.send(Type.EXECUTE_REQUEST, flags, id, pb.encodeExecuteRequest({ method, payload: Buffer.from(payload), timeoutMs }));
    return id;
  }

  signal(kind: number, name = "", data: Buffer = Buffer.alloc(0)): bigint {
    const id = this.nextId;
    this.nextId += 2n;
    this.send(Type.SIGNAL, 0, id, pb.encodeSignal(kind, name, data));
    return id;
  }

  /** The next frame answering request id (others are dropped). */
  async answer(id: bigint): Promise<Frame> {
    for (;;) {
      const f = await this.recv();
      if (f === null) throw new Error("the connection closed");
      if (f.id === id) return f;
    }
  }

  async call(method: string, payload: Buffer | string = ""): Promise<Buffer> {
    const f = await this.answer(this.execute(method, payload));
    if (f.type === Type.ERROR) throw new Error(`ERROR ${JSON.stringify(pb.decodeError(f.payload))}`);
    return pb.decodeExecuteResponse(f.payload).payload;
  }

  /** Waits for the instance to close the connection; the frames it sent. */
  async closed(answerProbes = true): Promise<Frame[]> {
    const seen: Frame[] = [];
    for (;;) {
      const f = await this.recv(answerProbes);
      if (f === null) return seen;
      seen.push(f);
    }
  }
}

export interface AgentOptions {
  secret?: Buffer;
  heartbeatMs?: number;
  maxPayload?: number;
  forge?: boolean;
}

/** Listens for one instance's connections. */
export class FakeAgent {
  readonly secret: Buffer;
  readonly path: string;
  failures = 0;
  readonly #dir: string;
  readonly #server: Server;
  readonly #conns: AgentConn[] = [];
  readonly #sockets: Socket[] = [];
  #waiter: (() => void) | undefined;

  constructor(readonly opts: AgentOptions = {}) {
    this.secret = opts.secret ?? Buffer.alloc(32, 7);
    this.#dir = mkdtempSync(join(tmpdir(), "spear-ts-"));
    this.path = join(this.#dir, "agent.sock");
    this.#server = createServer((s) => this.#accept(s));
  }

  listen(): Promise<this> {
    return new Promise((resolve) => this.#server.listen(this.path, () => resolve(this)));
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
    rmSync(this.#dir, { recursive: true, force: true });
  }

  config(secret?: Buffer): Config {
    return { instanceId: INSTANCE_ID, secret: new Secret(secret ?? this.secret), channel: "unix", address: this.path };
  }

  #accept(socket: Socket): void {
    this.#sockets.push(socket);
    const nonce = randomBytes(32);
    const parser = new FrameParser(64 << 20);
    let pending: Frame[] = [];
    const onData = (chunk: Buffer) => {
      pending.push(...parser.push(chunk));
      const f = pending.shift();
      if (!f) return;
      socket.removeListener("data", onData);
      const req = decodeAuthRequest(f.payload);
      const want = proof(this.secret, ROLE_INSTANCE, nonce, req.clientNonce, req.id);
      if (req.id !== INSTANCE_ID || req.proof.length !== 32 || !timingSafeEqual(want, req.proof)) {
        this.failures++;
        socket.end(encode(Type.ERROR, 0, 0n, pb.encodeError(3, "authentication failed")));
        return;
      }
      let serverProof = proof(this.secret, ROLE_AGENT, nonce, req.clientNonce, req.id);
      if (this.opts.forge) serverProof = Buffer.from(serverProof.map((b) => b ^ 0xff));
      socket.write(encode(Type.AUTH_RESPONSE, 0, 0n, authResponse(serverProof, this.opts.heartbeatMs ?? 0, this.opts.maxPayload ?? 16 << 20)));
      const conn = new AgentConn(socket, parser, pending);
      conn.features = req.features;
      this.#conns.push(conn);
      pending = [];
      this.#waiter?.();
    };
    socket.on("data", onData);
    socket.on("error", () => {});
    socket.write(encode(Type.AUTH_CHALLENGE, 0, 0n, Buffer.concat([Buffer.from([0x0a, 32]), nonce, Buffer.from([0x12, 1, 1])])));
  }

  /** The next authenticated connection. */
  async accept(): Promise<AgentConn> {
    const deadline = Date.now() + TIMEOUT_MS;
    for (;;) {
      const c = this.#conns.shift();
      if (c) return c;
      if (Date.now() > deadline) throw new Error("no connection");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.#waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }
}

function decodeAuthRequest(b: Buffer): { id: string; clientNonce: Buffer; proof: Buffer; features: string[] } {
  const out: { id: string; clientNonce: Buffer; proof: Buffer; features: string[] } = { id: "", clientNonce: Buffer.alloc(0), proof: Buffer.alloc(0), features: [] };
  for (const f of pb.fields(b)) {
    if (f.num === 1) out.id = (f.value as Buffer).toString();
    else if (f.num === 2) out.clientNonce = f.value as Buffer;
    else if (f.num === 3) out.proof = f.value as Buffer;
    else if (f.num === 6) out.features.push((f.value as Buffer).toString());
  }
  return out;
}

function authResponse(serverProof: Buffer, heartbeatMs: number, maxPayload: number): Buffer {
  const parts = [Buffer.from([0x0a, 6]), Buffer.from("s-test"), Buffer.from([0x1a, 32]), serverProof];
  if (heartbeatMs) parts.push(Buffer.from([0x20]), pb.varint(heartbeatMs));
  if (maxPayload) parts.push(Buffer.from([0x28]), pb.varint(maxPayload));
  return Buffer.concat(parts);
}
