// The instance: connect to the agent, authenticate, serve, reconnect.

import { randomBytes, timingSafeEqual } from "node:crypto";
import { createConnection, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";

import { NONCE_SIZE, ROLE_AGENT, ROLE_INSTANCE, proof } from "./auth.js";
import { type Config, configFromEnv } from "./config.js";
import { AuthFailedError, Code, ConfigError, ProtocolError, SpearError, codeOf } from "./errors.js";
import { DEFAULT_MAX_PAYLOAD, Flag, type Frame, FrameError, FrameParser, Type, VERSION, encode, header } from "./frame.js";
import { JSONLogger, type Logger } from "./log.js";
import * as pb from "./proto.js";
import { checkPin, tlsOptions } from "./tls.js";
import { Request, type Result, type Sink, toBytes } from "./request.js";

/** A handler: a function of one Request that returns (or resolves to) bytes, a string or nothing. */
export type Handler = (req: Request) => Result | Promise<Result>;

/** What run() and Instance serve: one handler for every method, or handlers by method (unknown methods get NOT_FOUND). */
export type Handlers = Handler | Readonly<Record<string, Handler>>;

/** Kinds of signal from the agent (docs/protocol.md, section 14). */
export enum SignalKind {
  UNSPECIFIED = 0,
  TERMINATE = 1,
  PAUSE = 2,
  RESUME = 3,
  CUSTOM = 4,
}

/** A signal from the agent, as onSignal receives it. */
export interface Signal {
  kind: SignalKind;
  name: string;
  data: Buffer;
}

/** Options of an Instance. */
export interface InstanceOptions {
  /** Where and as whom to connect; default configFromEnv(). */
  config?: Config;
  /**
   * Called for pause and resume (after the SDK paused or resumed serving) and
   * for custom signals, which it must handle or reject by throwing
   * SpearError(Code.NOT_FOUND).
   */
  onSignal?: (signal: Signal) => void | Promise<void>;
  /** Called with each one-way message from the agent. */
  onMessage?: (payload: Buffer) => void;
  /** The largest frame payload accepted from the agent (default 16 MiB). */
  maxPayload?: number;
  /** Milliseconds to connect and authenticate (default 10 000). */
  handshakeTimeoutMs?: number;
  /** Milliseconds between reconnection attempts: doubling from min to max, with jitter (defaults 50 and 5 000). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Where the SDK's logs go (default JSON lines on stderr). */
  logger?: Logger;
}

/** Payloads up to this size are copied behind their header and sent in one write; larger ones are written apart, uncopied. */
const COALESCE = 64 << 10;

/** How many silent heartbeat intervals mean the agent is gone. */
const HEARTBEAT_MISSES = 3;

/**
 * A function instance's connection to its agent. Most functions call
 * {@link run} instead; use Instance to serve alongside other work, or to
 * send the agent one-way messages.
 */
export class Instance {
  /** Where and as whom the instance connects. */
  readonly config: Config;
  /** Whether serving is paused (by a pause signal). */
  paused = false;
  /** Whether a terminate signal arrived: new requests are refused. */
  terminating = false;

  readonly #handlers: Handlers;
  readonly #opts: Required<Omit<InstanceOptions, "config" | "onSignal" | "onMessage" | "logger">> & Pick<InstanceOptions, "onSignal" | "onMessage">;
  readonly #log: Logger;
  #conn: Connection | undefined;
  #stopped = false;
  #wake: (() => void) | undefined;

  constructor(handler: Handlers, options: InstanceOptions = {}) {
    if (handler === undefined || handler === null) throw new ConfigError("a handler is required");
    this.#handlers = handler;
    this.config = options.config ?? configFromEnv();
    const min = options.minBackoffMs ?? 50;
    this.#opts = {
      onSignal: options.onSignal,
      onMessage: options.onMessage,
      maxPayload: options.maxPayload ?? DEFAULT_MAX_PAYLOAD,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
      minBackoffMs: min,
      maxBackoffMs: Math.max(options.maxBackoffMs ?? 5_000, min),
    };
    const base = { instance: this.config.instanceId, transport: this.config.channel };
    const logger = options.logger ?? new JSONLogger();
    this.#log = { log: (level, msg, fields) => logger.log(level, msg, { ...base, ...fields }) };
  }

  /** Whether an authenticated connection to the agent is up. */
  get connected(): boolean {
    return this.#conn !== undefined && !this.#conn.closed;
  }

  /** @internal */
  get options() {
    return this.#opts;
  }

  /** @internal */
  get log(): Logger {
    return this.#log;
  }

  /** The handler serving method, or undefined. */
  handlerFor(method: string): Handler | undefined {
    if (typeof this.#handlers === "function") return this.#handlers;
    return Object.prototype.hasOwnProperty.call(this.#handlers, method) ? this.#handlers[method] : undefined;
  }

  /**
   * Connects, authenticates and serves until the agent terminates the
   * instance or stop() is called, reconnecting with backoff when the
   * connection is lost.
   *
   * @throws AuthFailedError when the handshake fails: retrying cannot help.
   */
  async serve(): Promise<void> {
    let backoff = this.#opts.minBackoffMs;
    for (;;) {
      let reason: string;
      try {
        const conn = await this.#connect();
        backoff = this.#opts.minBackoffMs;
        this.#conn = conn;
        this.#log.log("info", "connected to agent", { session: conn.sessionId });
        if (this.#stopped) conn.goAway(Code.UNAVAILABLE, "instance shutting down");
        reason = await conn.done;
        this.#conn = undefined;
      } catch (e) {
        if (e instanceof AuthFailedError) {
          this.#log.log("error", "authentication failed; not retrying", { err: e.message });
          throw e;
        }
        if (e instanceof ConfigError) throw e;
        reason = e instanceof Error ? e.message : String(e);
      }
      if (this.terminating || this.#stopped) return;
      const delay = backoff / 2 + (Math.random() * backoff) / 2;
      this.#log.log("info", "connection to agent lost; reconnecting", { err: reason, in_ms: Math.round(delay) });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
      if (this.#stopped) return;
      backoff = Math.min(backoff * 2, this.#opts.maxBackoffMs);
    }
  }

  /** Closes the connection with a goodbye and makes serve() return. */
  stop(): void {
    this.#stopped = true;
    this.#wake?.();
    this.#conn?.goAway(Code.UNAVAILABLE, "instance shutting down");
  }

  /**
   * Sends a one-way message to the agent.
   *
   * @throws SpearError UNAVAILABLE when not connected.
   */
  sendMessage(payload: Uint8Array | string): void {
    const conn = this.#conn;
    if (conn === undefined || conn.closed) throw new SpearError(Code.UNAVAILABLE, "not connected to the agent");
    conn.send(Type.MESSAGE, 0, 0n, toBytes(payload, "message"));
  }

  async #connect(): Promise<Connection> {
    const socket = await dial(this.config, this.#opts.handshakeTimeoutMs);
    const link = new Link(socket, this.#opts.maxPayload);
    const timer = setTimeout(() => link.destroy(new Error(`no handshake within ${this.#opts.handshakeTimeoutMs} ms`)), this.#opts.handshakeTimeoutMs);
    try {
      const auth = await this.#handshake(link);
      return new Connection(this, link, auth);
    } catch (e) {
      link.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  async #handshake(link: Link): Promise<pb.AuthResponse> {
    const { instanceId, secret } = this.config;
    let f = await link.next();
    raiseRefusal(f);
    if (f.type !== Type.AUTH_CHALLENGE) throw new ProtocolError(Code.INVALID_MESSAGE, `expected AUTH_CHALLENGE, got type ${f.type}`);
    const challenge = pb.decodeAuthChallenge(f.payload);
    if (challenge.nonce.length !== NONCE_SIZE) {
      throw new ProtocolError(Code.INVALID_MESSAGE, `challenge nonce of ${challenge.nonce.length} bytes, want ${NONCE_SIZE}`);
    }
    if (!challenge.versions.includes(VERSION)) {
      throw new ProtocolError(Code.UNSUPPORTED_VERSION, `the agent speaks versions ${challenge.versions}, not ${VERSION}`);
    }
    const clientNonce = randomBytes(NONCE_SIZE);
    const mine = proof(secret.reveal(), ROLE_INSTANCE, challenge.nonce, clientNonce, instanceId);
    link.write(encode(Type.AUTH_REQUEST, 0, 0n, pb.encodeAuthRequest(instanceId, clientNonce, mine, [pb.FEATURE_SPLIT])));
    f = await link.next();
    raiseRefusal(f);
    if (f.type !== Type.AUTH_RESPONSE) throw new ProtocolError(Code.INVALID_MESSAGE, `expected AUTH_RESPONSE, got type ${f.type}`);
    const resp = pb.decodeAuthResponse(f.payload);
    const theirs = proof(secret.reveal(), ROLE_AGENT, challenge.nonce, clientNonce, instanceId);
    if (resp.serverProof.length !== theirs.length || !timingSafeEqual(resp.serverProof, theirs)) {
      throw new AuthFailedError("the agent could not prove it knows the secret");
    }
    return resp;
  }
}

/** Turns an ERROR frame during the handshake into an exception. */
function raiseRefusal(f: Frame): void {
  if (f.type !== Type.ERROR) return;
  const { code, message } = pb.decodeError(f.payload);
  if (code === Code.AUTH_FAILED) throw new AuthFailedError(message || "authentication failed");
  throw new SpearError(codeOf(code), `the agent refused the connection: ${message}`);
}

/** Opens a socket to the agent: over TLS, and checked, when cfg.tls says so. */
function dial(cfg: Config, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let socket: Socket;
    let ready = "connect";
    if (cfg.channel === "unix") {
      socket = createConnection({ path: cfg.address });
    } else {
      const m = /^\[?(.*?)\]?:(\d+)$/.exec(cfg.address);
      if (!m) {
        reject(new ConfigError(`tcp address ${JSON.stringify(cfg.address)} is not host:port`));
        return;
      }
      if (cfg.tls) {
        socket = tlsConnect({ host: m[1], port: Number(m[2]), ...tlsOptions(cfg.tls, cfg.secret.reveal(), m[1]) });
        socket.setNoDelay(true);
        ready = "secureConnect";
      } else {
        socket = createConnection({ host: m[1], port: Number(m[2]), noDelay: true });
      }
    }
    const timer = setTimeout(() => socket.destroy(new Error(`could not connect within ${timeoutMs} ms`)), timeoutMs);
    socket.once(ready, () => {
      clearTimeout(timer);
      socket.removeListener("error", reject);
      try {
        if (cfg.tls) checkPin(cfg.tls, socket as TLSSocket);
      } catch (e) {
        socket.destroy();
        reject(e);
        return;
      }
      resolve(socket);
    });
    socket.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/**
 * A socket carrying frames. Before a receiver is set, frames queue for
 * next() (the handshake reads them one by one); after, they go to it as they
 * arrive. done settles once, when the socket is gone, with why.
 */
class Link {
  readonly done: Promise<string>;
  #queue: Frame[] = [];
  #waiter: { resolve: (f: Frame) => void; reject: (e: Error) => void } | undefined;
  #receiver: ((f: Frame) => void) | undefined;
  #ended: Error | undefined;
  #finish!: (why: string) => void;
  #refused: string | undefined;

  constructor(
    readonly socket: Socket,
    maxPayload: number,
  ) {
    this.done = new Promise((resolve) => (this.#finish = resolve));
    const parser = new FrameParser(maxPayload);
    socket.on("data", (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = parser.push(chunk);
      } catch (e) {
        if (e instanceof FrameError) {
          // Refuse the frame, then close: the stream is out of step.
          this.#refused = `refused a frame: ${e.message}`;
          this.write(encode(Type.ERROR, 0, 0n, pb.encodeError(e.code, e.message)));
          socket.pause();
          this.end();
          return;
        }
        throw e;
      }
      for (const f of frames) this.#deliver(f);
    });
    socket.on("error", () => {}); // the close that follows reports it
    socket.on("close", () => {
      const why = this.#refused ?? (parser.partial ? "the connection ended inside a frame" : "the agent closed the connection");
      this.#ended = new Error(why);
      this.#waiter?.reject(this.#ended);
      this.#waiter = undefined;
      this.#finish(why);
    });
  }

  #deliver(f: Frame): void {
    if (this.#receiver) {
      this.#receiver(f);
    } else if (this.#waiter) {
      this.#waiter.resolve(f);
      this.#waiter = undefined;
    } else {
      this.#queue.push(f);
    }
  }

  /** The next frame (for the handshake). */
  next(): Promise<Frame> {
    const f = this.#queue.shift();
    if (f) return Promise.resolve(f);
    if (this.#ended) return Promise.reject(this.#ended);
    return new Promise((resolve, reject) => (this.#waiter = { resolve, reject }));
  }

  /** Delivers every frame to receiver from now on, queued ones first. */
  receive(receiver: (f: Frame) => void): void {
    this.#receiver = receiver;
    for (const f of this.#queue.splice(0)) receiver(f);
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  drain(): Promise<void> {
    if (!this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onDrain = () => {
        this.socket.removeListener("close", onClose);
        resolve();
      };
      const onClose = () => {
        this.socket.removeListener("drain", onDrain);
        reject(new SpearError(Code.UNAVAILABLE, "the connection to the agent was lost"));
      };
      this.socket.once("drain", onDrain);
      this.socket.once("close", onClose);
    });
  }

  /** Closes the connection once what was written is flushed. */
  end(): void {
    this.socket.end(() => this.socket.destroy());
  }

  destroy(err?: Error): void {
    this.socket.destroy(err);
  }
}

/** One authenticated connection: dispatch, heartbeats, and the requests in flight. */
class Connection implements Sink {
  readonly sessionId: string;
  readonly done: Promise<string>;
  closed = false;
  readonly #inst: Instance;
  readonly #link: Link;
  readonly #peerMax: number;
  readonly #requests = new Map<bigint, Request>();
  #framesIn = 0;
  #ending: string | undefined;
  #idle: (() => void)[] = [];
  #beat: NodeJS.Timeout | undefined;

  constructor(inst: Instance, link: Link, auth: pb.AuthResponse) {
    this.#inst = inst;
    this.#link = link;
    this.sessionId = auth.sessionId;
    this.#peerMax = auth.maxPayload;
    this.done = link.done.then((why) => {
      this.#close();
      return this.#ending ?? why;
    });
    if (auth.heartbeatIntervalMs > 0) this.#startHeartbeat(auth.heartbeatIntervalMs);
    link.receive((f) => this.#dispatch(f));
  }

  send(type: number, flags: number, id: bigint, payload: Buffer = Buffer.alloc(0)): void {
    if (this.closed) throw new SpearError(Code.UNAVAILABLE, "the connection to the agent is closed");
    const head = header(type, flags, id, payload.length);
    if (payload.length === 0) return this.#link.write(head);
    if (payload.length <= COALESCE) return this.#link.write(Buffer.concat([head, payload]));
    this.#link.write(head);
    this.#link.write(payload);
  }

  sendChunk(id: bigint, data: Buffer, flags = 0): void {
    if (this.#peerMax && data.length > this.#peerMax) {
      throw new SpearError(Code.TOO_LARGE, `chunk of ${data.length} bytes is over the agent's limit of ${this.#peerMax}`);
    }
    this.send(Type.STREAM_DATA, flags, id, data);
  }

  sendError(id: bigint, code: Code, message: string): void {
    if (!this.closed) this.send(Type.ERROR, 0, id, pb.encodeError(code, message));
  }

  drain(): Promise<void> {
    return this.#link.drain();
  }

  /** Says goodbye with a CLOSE frame and closes the connection. */
  goAway(code: Code, reason: string): void {
    if (this.closed || this.#ending !== undefined) return;
    this.#ending = reason;
    this.send(Type.CLOSE, 0, 0n, pb.encodeError(code, reason));
    this.#link.end();
  }

  #close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.#beat) clearInterval(this.#beat);
    for (const req of this.#requests.values()) req.interrupt(Code.CANCELED);
  }

  #startHeartbeat(intervalMs: number): void {
    let last = this.#framesIn;
    let misses = 0;
    this.#beat = setInterval(() => {
      if (this.#framesIn !== last) {
        last = this.#framesIn;
        misses = 0;
        return;
      }
      if (++misses >= HEARTBEAT_MISSES) {
        this.#inst.log.log("warn", "agent silent; dropping the connection", { misses });
        this.#ending = `no frame from the agent in ${misses} heartbeat intervals`;
        this.#link.destroy();
        return;
      }
      this.send(Type.HEARTBEAT, 0, 0n);
    }, intervalMs);
    this.#beat.unref();
  }

  #dispatch(f: Frame): void {
    if (this.closed || this.#ending !== undefined) return;
    this.#framesIn++;
    switch (f.type) {
      case Type.EXECUTE_REQUEST:
        this.#execute(f);
        break;
      case Type.CANCEL:
        this.#requests.get(f.id)?.interrupt(Code.CANCELED);
        break;
      case Type.HEARTBEAT:
        if (!(f.flags & Flag.ACK)) this.send(Type.HEARTBEAT, Flag.ACK, f.id, f.payload);
        break;
      case Type.SIGNAL:
        this.#signal(f);
        break;
      case Type.MESSAGE:
        try {
          this.#inst.options.onMessage?.(f.payload);
        } catch (e) {
          this.#inst.log.log("warn", "onMessage failed", { err: String(e) });
        }
        break;
      case Type.CLOSE: {
        const { code, message } = pb.decodeError(f.payload);
        this.#ending = `the agent closed the connection (${Code[codeOf(code)]}: ${message})`;
        this.#link.end();
        break;
      }
      case Type.ERROR:
        if (f.id === 0n) {
          const { code, message } = pb.decodeError(f.payload);
          this.#ending = `the agent ended the connection (${Code[codeOf(code)]}: ${message})`;
          this.#link.end();
        }
        break;
      case Type.AUTH_CHALLENGE:
      case Type.AUTH_REQUEST:
      case Type.AUTH_RESPONSE:
        this.sendError(0n, Code.INVALID_MESSAGE, "authentication frame after the handshake");
        this.#ending = "the agent sent an authentication frame after the handshake";
        this.#link.end();
        break;
      // Anything else answers a request this instance never opens: ignored.
    }
  }

  #execute(f: Frame): void {
    if (this.#requests.has(f.id)) {
      this.sendError(f.id, Code.INVALID_MESSAGE, `request id ${f.id} is already in use`);
      return;
    }
    let r: pb.ExecuteRequest;
    try {
      r = f.flags & Flag.SPLIT ? pb.decodeExecuteRequestSplit(f.payload) : pb.decodeExecuteRequest(f.payload);
    } catch (e) {
      this.sendError(f.id, Code.INVALID_MESSAGE, `undecodable EXECUTE_REQUEST: ${(e as Error).message}`);
      return;
    }
    if (this.#inst.terminating) return this.sendError(f.id, Code.UNAVAILABLE, "instance is terminating");
    if (this.#inst.paused) return this.sendError(f.id, Code.UNAVAILABLE, "instance is paused");
    const handler = this.#inst.handlerFor(r.method);
    if (!handler) return this.sendError(f.id, Code.NOT_FOUND, `no method ${JSON.stringify(r.method)}`);
    const req = new Request(this, f.id, r.method, r.payload, r.metadata, (f.flags & Flag.STREAM) !== 0, r.timeoutMs);
    req.split = (f.flags & Flag.SPLIT) !== 0;
    this.#requests.set(f.id, req);
    void this.#run(req, handler);
  }

  async #run(req: Request, handler: Handler): Promise<void> {
    // Whichever comes first answers: the handler's outcome, or an
    // interruption (CANCEL, the deadline, the connection ending), which is
    // answered at once while the handler winds down on its aborted signal.
    let done = false;
    const remaining = req.timeRemaining();
    const timer = remaining === undefined ? undefined : setTimeout(() => req.interrupt(Code.DEADLINE_EXCEEDED), remaining);
    const finish = (answer: () => void) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      req.end();
      this.#requests.delete(req.id);
      try {
        answer();
      } catch {
        // The connection is gone: nobody to answer.
      }
      if (this.#requests.size === 0) for (const wake of this.#idle.splice(0)) wake();
    };
    req.onInterrupt((e) => finish(() => this.sendError(req.id, e.code, e.message)));
    let result: Result;
    try {
      result = await handler(req);
    } catch (e) {
      finish(() => {
        if (e instanceof SpearError) return this.sendError(req.id, e.code, e.message);
        const text = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
        this.#inst.log.log("warn", "handler failed", { method: req.method, err: text });
        this.sendError(req.id, Code.INTERNAL, text);
      });
      return;
    }
    if (done) return;
    finish(() => this.#answer(req, result));
    await this.drain().catch(() => {});
  }

  #answer(req: Request, result: Result): void {
    let data: Buffer;
    try {
      data = toBytes(result);
    } catch (e) {
      return this.sendError(req.id, Code.INTERNAL, (e as Error).message);
    }
    if (req.streaming) {
      try {
        this.sendChunk(req.id, data, Flag.END);
      } catch (e) {
        if (!(e instanceof SpearError) || e.code !== Code.TOO_LARGE) throw e;
        this.sendError(req.id, Code.TOO_LARGE, `last ${e.message}`);
      }
      return;
    }
    if (req.gathered.length) data = Buffer.concat([...req.gathered, data]);
    const split = req.split;
    // Split, the result follows a 4-byte empty envelope, never copied into a message.
    const lead = split ? [pb.SPLIT_RESPONSE_HEADER] : data.length ? [pb.varint(1 * 8 + 2), pb.varint(data.length)] : [];
    const size = split ? 4 + data.length : pb.executeResponseSize(data.length);
    if (this.#peerMax && size > this.#peerMax) {
      return this.sendError(req.id, Code.TOO_LARGE, `result of ${data.length} bytes is over the agent's limit of ${this.#peerMax}`);
    }
    const head = header(Type.EXECUTE_RESPONSE, split ? Flag.SPLIT : 0, req.id, size);
    if (!size) return this.#link.write(head);
    const parts = [head, ...lead, data];
    if (data.length <= COALESCE) return this.#link.write(Buffer.concat(parts)); // one write for a small answer
    for (const part of parts) this.#link.write(part); // no copy of a large one
  }

  #signal(f: Frame): void {
    let s: pb.SignalMessage;
    try {
      s = pb.decodeSignal(f.payload);
    } catch (e) {
      return this.#answerSignal(f.id, new SpearError(Code.INVALID_MESSAGE, `undecodable SIGNAL: ${(e as Error).message}`));
    }
    const kind: SignalKind = s.kind in SignalKind ? s.kind : SignalKind.UNSPECIFIED;
    const signal: Signal = { kind, name: s.name, data: s.data };
    const inst = this.#inst;
    inst.log.log("info", "signal from agent", { kind: SignalKind[kind].toLowerCase(), name: s.name });
    if (kind === SignalKind.TERMINATE) {
      // Draining starts before the acknowledgement leaves, so that a request
      // the agent sends once it has the ack is refused.
      inst.terminating = true;
      this.#answerSignal(f.id);
      void this.#drainAndClose();
      return;
    }
    const onSignal = inst.options.onSignal;
    if (kind === SignalKind.PAUSE || kind === SignalKind.RESUME) {
      inst.paused = kind === SignalKind.PAUSE;
      if (!onSignal) return this.#answerSignal(f.id);
    } else if (!onSignal) {
      return this.#answerSignal(f.id, new SpearError(Code.NOT_FOUND, `no handler for signal ${SignalKind[kind].toLowerCase()} ${JSON.stringify(s.name)}`));
    }
    (async () => onSignal!(signal))().then(
      () => this.#answerSignal(f.id),
      (e: unknown) => this.#answerSignal(f.id, e instanceof SpearError ? e : new SpearError(Code.INTERNAL, String(e))),
    );
  }

  #answerSignal(id: bigint, err?: SpearError): void {
    if (id === 0n || this.closed) return; // a one-way signal gets no answer
    if (err) this.sendError(id, err.code, err.message);
    else this.send(Type.EXECUTE_RESPONSE, 0, id);
  }

  async #drainAndClose(): Promise<void> {
    if (this.#requests.size > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
    try {
      await this.drain();
    } catch {
      return;
    }
    this.goAway(Code.UNAVAILABLE, "instance terminated");
  }
}

/** Serves handler until the agent terminates the instance; see Instance for the options. */
export async function serve(handler: Handlers, options: InstanceOptions = {}): Promise<void> {
  await new Instance(handler, options).serve();
}

/**
 * The whole main of an instance: serves handler with the connection settings
 * from the environment until the agent terminates the instance or the process
 * gets SIGTERM or SIGINT, then exits the process: with status 0, or 1 when it
 * could not start (a bad environment, a failed handshake). Logs go to stderr
 * as JSON lines.
 */
export function run(handler: Handlers, options: InstanceOptions = {}): void {
  const logger = options.logger ?? new JSONLogger();
  let inst: Instance;
  try {
    inst = new Instance(handler, { ...options, logger });
  } catch (e) {
    logger.log("error", "spear instance: bad configuration", { err: (e as Error).message });
    process.exit(1);
  }
  const stop = () => inst.stop();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  inst.serve().then(
    // Handlers still waiting on timers or I/O must not keep the process.
    () => process.exit(0),
    (e: unknown) => {
      logger.log("error", "spear instance stopped", { err: e instanceof Error ? e.message : String(e) });
      process.exit(1);
    },
  );
}
