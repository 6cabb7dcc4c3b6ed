/** Error codes of the protocol (docs/protocol.md, section 17). */
export enum Code {
  UNKNOWN = 0,
  INVALID_MESSAGE = 1,
  UNSUPPORTED_VERSION = 2,
  AUTH_FAILED = 3,
  NOT_FOUND = 4,
  DEADLINE_EXCEEDED = 5,
  CANCELED = 6,
  TOO_LARGE = 7,
  UNAVAILABLE = 8,
  INTERNAL = 9,
  RESOURCE_EXHAUSTED = 10,
}

/** Returns the code for a wire value; values this SDK does not know are UNKNOWN. */
export function codeOf(value: number): Code {
  return value in Code ? (value as Code) : Code.UNKNOWN;
}

/**
 * An error with a protocol error code. Throw it from a handler to choose the
 * code the caller sees: `throw new SpearError(Code.NOT_FOUND, "no such thing")`.
 * The SDK throws it too, for instance from {@link Request.write} when a chunk
 * is over the agent's payload limit.
 */
export class SpearError extends Error {
  /** The wire code. */
  readonly code: Code;

  constructor(code: Code, message = "") {
    super(message);
    this.name = "SpearError";
    this.code = codeOf(code);
  }

  override toString(): string {
    return `${Code[this.code]}: ${this.message}`;
  }
}

/** The instance's configuration (its SPEAR_* environment) is unusable. */
export class ConfigError extends SpearError {
  constructor(message: string) {
    super(Code.INVALID_MESSAGE, message);
    this.name = "ConfigError";
  }
}

/**
 * The handshake failed: wrong credentials, or an agent that could not prove
 * it knows the secret. It is final: the instance does not retry.
 */
export class AuthFailedError extends SpearError {
  constructor(message: string) {
    super(Code.AUTH_FAILED, message);
    this.name = "AuthFailedError";
  }
}

/** The peer broke the protocol; the connection is closed. */
export class ProtocolError extends SpearError {
  constructor(code: Code, message: string) {
    super(code, message);
    this.name = "ProtocolError";
  }
}
