import { pino, type DestinationStream, type Logger } from "pino";

export type { Logger };

/**
 * Fields pino blanks before a line is written. The emulator never logs a key or a token on
 * purpose; this keeps a request or error object logged whole from carrying one out.
 */
const REDACT_PATHS = [
  "req.headers.authorization",
  'req.headers["x-ms-content-sha256"]',
  "headers.authorization",
  "*.token",
  "*.accessKey",
  "*.connectionString",
  "token",
  "accessKey",
  "connectionString",
];

/** The standalone command's logger: JSON lines on `destination` (stderr), ISO timestamps. */
export function createLogger(
  options: { level?: string; name?: string },
  destination: DestinationStream,
): Logger {
  return pino(
    {
      level: options.level ?? "info",
      name: options.name,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
