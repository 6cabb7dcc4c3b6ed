// Structured logs: JSON lines on stderr, which the agent captures.

/** Severity of a log record. */
export type Level = "debug" | "info" | "warn" | "error";

const rank: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** What the SDK logs through. Pass your own to Instance to route its logs elsewhere. */
export interface Logger {
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
}

/**
 * Writes one JSON object per line to a stream (default stderr): time, level,
 * msg, then the fields. Records below the level (default: SPEAR_LOG_LEVEL,
 * else info) are dropped.
 */
export class JSONLogger implements Logger {
  constructor(
    private readonly out: { write(s: string): unknown } = process.stderr,
    private readonly level: Level = (process.env.SPEAR_LOG_LEVEL?.toLowerCase() as Level) || "info",
    private readonly base: Record<string, unknown> = {},
  ) {}

  /** A logger that adds fields to every record. */
  with(fields: Record<string, unknown>): JSONLogger {
    return new JSONLogger(this.out, this.level, { ...this.base, ...fields });
  }

  log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
    if (rank[level] < (rank[this.level] ?? rank.info)) return;
    const record = { time: new Date().toISOString(), level, msg, ...this.base, ...fields };
    this.out.write(JSON.stringify(record, (_k, v) => (v instanceof Error ? String(v) : typeof v === "bigint" ? v.toString() : v)) + "\n");
  }
}
