import { pino, type Logger, type LoggerOptions } from "pino";

export type { Logger };

/**
 * Paths pino blanks before a line is written. Belt and braces: the code never logs these on
 * purpose, but a request or error object logged whole must not carry a credential out.
 */
export const REDACT_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  'req.headers["router-authorization"]',
  'req.headers["x-ms-content-sha256"]',
  "headers.authorization",
  'headers["router-authorization"]',
  "*.token",
  "*.accessToken",
  "*.accessKey",
  "*.connectionString",
  "*.authorization",
  "token",
  "accessKey",
  "connectionString",
];

export function createLogger(
  options: { level?: LoggerOptions["level"]; name?: string } = {},
  destination?: pino.DestinationStream,
): Logger {
  const opts: LoggerOptions = {
    level: options.level ?? "info",
    name: options.name,
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    base: undefined,
    timestamp: isoTime,
  };
  return pino(opts, destination ?? pino.destination({ dest: 1, sync: false, maxWrite: MAX_WRITE }));
}

/**
 * The most bytes the default destination (stdout, asynchronous as pino's own default) hands to one
 * `write(2)`: a few access lines. While a write is in flight, sonic-boom appends the next lines to
 * its last pending string and measures that string's UTF-8 length on every append, which copies
 * the string whole. With its default of 16 KiB, that copying was 7 KB of garbage per
 * `{ __typename }` request under load (V8's allocation sampler: 49 KB allocated per request, 43 KB
 * with 2 KiB, against the bare Apollo + Fastify ceiling's 37 KB), and sonic-boom's share of the
 * request's CPU profile fell from 6.6% to 3.5%. The extra, smaller writes run on libuv's threads.
 */
const MAX_WRITE = 2048;

let stampedMs = Number.NaN;
let stamp = "";

/**
 * pino's `stdTimeFunctions.isoTime` (`,"time":"2026-12-05T21:45:40.123Z"`), formatted once per
 * millisecond instead of once per line: a busy gateway writes several lines per millisecond, and
 * `Date#toISOString` alone was 2% of the CPU of a `{ __typename }` request.
 */
export function isoTime(): string {
  const now = Date.now();
  if (now !== stampedMs) {
    stampedMs = now;
    stamp = `,"time":"${new Date(now).toISOString()}"`;
  }
  return stamp;
}

/**
 * Writes info lines whose fields the caller has already serialised, in pino's format and to
 * `parent`'s destination: `{"level":30,"time":...,<parent's and these bindings>,<fields>,"msg":...}`.
 *
 * For the access line only (one per GraphQL request): every field is built by the gateway from
 * known values (ids, names, counts, hashes), so pino's generic path (redaction, then a walk of
 * the object's keys with a safe stringifier) buys nothing there, and it cost about a tenth of the
 * CPU of a `{ __typename }` request. Never write request, header or error objects through it.
 * test/logger.test.ts pins that its lines read as pino's own.
 */
export interface LineWriter {
  /** Whether info lines are written at all (the parent's level, read once). */
  readonly enabled: boolean;
  /** `fields`: JSON object members without braces (`"a":1,"b":"x"`); may be empty. */
  info(fields: string, msg: string): void;
}

export function createLineWriter(parent: Logger, bindings: Record<string, string>): LineWriter {
  const stream = (parent as unknown as Record<symbol, pino.DestinationStream | undefined>)[
    pino.symbols.streamSym
  ];
  if (stream === undefined) {
    throw new TypeError("createLineWriter needs a pino logger (it writes to the same destination)");
  }
  let head = "";
  for (const [name, value] of Object.entries({ ...parent.bindings(), ...bindings })) {
    head += `,${JSON.stringify(name)}:${JSON.stringify(value)}`;
  }
  const level = `{"level":${pino.levels.values.info}`;
  return {
    enabled: parent.isLevelEnabled("info"),
    info(fields, msg) {
      stream.write(
        `${level}${isoTime()}${head}${fields === "" ? "" : `,${fields}`},"msg":${JSON.stringify(msg)}}\n`,
      );
    },
  };
}

const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

/** The less verbose of two pino levels: for components whose info lines are noise to operators. */
export function quieter(a: string, b: string): string {
  return LEVELS.indexOf(a) >= LEVELS.indexOf(b) ? a : b;
}
