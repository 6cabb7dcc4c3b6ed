import { Code, SpearError } from "./errors.js";

/** What a handler may return: bytes, text (sent as UTF-8), or nothing. */
export type Result = Uint8Array | string | void | null | undefined;

/** Converts a handler's result or chunk to bytes. */
export function toBytes(value: Result, what = "result"): Buffer {
  if (value === undefined || value === null) return Buffer.alloc(0);
  if (typeof value === "string") return Buffer.from(value, "utf8");
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError(`a handler's ${what} must be a Uint8Array, a string or nothing, not ${typeof value}`);
}

/** What a Request needs from its connection. */
export interface Sink {
  sendChunk(id: bigint, data: Buffer): void;
  drain(): Promise<void>;
}

/** One execute request. */
export class Request {
  /** The method the caller asked for; "" means the default. */
  readonly method: string;
  /** The caller's input. */
  readonly payload: Buffer;
  /** The caller's key-value pairs. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The request id on the connection (for logs). */
  readonly id: bigint;
  /** Whether the caller asked for streamed output. */
  readonly streaming: boolean;
  /** When the caller stops waiting (a Date.now() value), or undefined without a timeout. */
  readonly deadline: number | undefined;
  /** @internal */
  readonly gathered: Buffer[] = [];
  /** @internal Whether the request came in the split layout; so goes the answer. */
  split = false;
  readonly #sink: Sink;
  #ended = false;
  #controller: AbortController | undefined; // made when signal is first read
  #reason: SpearError | undefined;
  #onInterrupt: ((reason: SpearError) => void) | undefined;

  /** @internal */
  constructor(sink: Sink, id: bigint, method: string, payload: Buffer, metadata: Record<string, string>, streaming: boolean, timeoutMs: number) {
    this.#sink = sink;
    this.id = id;
    this.method = method;
    this.payload = payload;
    this.metadata = metadata;
    this.streaming = streaming;
    this.deadline = timeoutMs ? Date.now() + timeoutMs : undefined;
  }

  /**
   * Aborted when the caller cancels the request or its deadline passes; its
   * reason is a SpearError with code CANCELED or DEADLINE_EXCEEDED. Pass it
   * to fetch, timers and streams so they stop with the request.
   */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#reason) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /** The payload decoded as UTF-8. */
  get text(): string {
    return this.payload.toString("utf8");
  }

  /** Whether the request was cancelled or its deadline passed. */
  get cancelled(): boolean {
    return this.#reason !== undefined;
  }

  /** Milliseconds until the deadline (0 once passed), or undefined without one. */
  timeRemaining(): number | undefined {
    return this.deadline === undefined ? undefined : Math.max(0, this.deadline - Date.now());
  }

  /**
   * Sends one chunk of output: at once to a streaming caller, or gathered
   * ahead of the result for a unary one. The chunk is queued on the
   * connection; `await req.drain()` waits until it has room again.
   *
   * @throws SpearError TOO_LARGE for a chunk over the agent's payload limit;
   *   CANCELED or DEADLINE_EXCEEDED once the request was cancelled;
   *   UNAVAILABLE when the connection is gone.
   */
  write(chunk: Uint8Array | string): void {
    const data = toBytes(chunk, "chunk");
    if (this.#reason) throw this.#reason;
    if (this.#ended) throw new SpearError(Code.CANCELED, "the request has ended");
    if (!this.streaming) {
      this.gathered.push(data);
      return;
    }
    this.#sink.sendChunk(this.id, data);
  }

  /** Waits until the connection's write buffer has room again. */
  drain(): Promise<void> {
    return this.#sink.drain();
  }

  /** @internal Cancels the request with reason. */
  interrupt(reason: Code.CANCELED | Code.DEADLINE_EXCEEDED): void {
    if (this.#ended || this.#reason) return;
    const what = reason === Code.DEADLINE_EXCEEDED ? "deadline exceeded" : "request cancelled";
    this.#reason = new SpearError(reason, what);
    this.#onInterrupt?.(this.#reason);
    this.#controller?.abort(this.#reason);
  }

  /** @internal Registers what an interruption runs. */
  onInterrupt(fn: (reason: SpearError) => void): void {
    this.#onInterrupt = fn;
  }

  /** @internal */
  end(): void {
    this.#ended = true;
  }
}
