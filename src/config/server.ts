import { z } from "zod";
import type { Config } from "../config.js";
import type { Decisions } from "./decisions.js";
import { ignored, int, settings, whenParsed } from "./fields.js";

/** NODE_ENV. */
export const environment = ({ production }: Decisions) =>
  settings({
    // Exact values only: a typo such as "prod" or "Production" must not quietly start a
    // development gateway (embedded emulator, every caller an admin) where production was meant.
    NODE_ENV: z
      .enum(["development", "production", "test"], {
        error: "must be development, production or test (exactly, in lower case)",
      })
      .default("development"),
  }).transform((s): Pick<Config, "nodeEnv" | "production"> => ({
    nodeEnv: s.NODE_ENV,
    production,
  }));

/** Where the gateway listens, and what it logs. */
export const listening = ({ production }: Decisions) =>
  settings({
    // Unset: loopback in development and test (a development gateway lets every caller mint
    // tokens as an admin, so it must not be reachable from the network by accident), every
    // interface in production (where callers must present a verified JWT). Containers set HOST
    // themselves.
    HOST: z.string().default(production ? "0.0.0.0" : "127.0.0.1"),
    PORT: int(4000, 0, 65535),
    LOG_LEVEL: z
      .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
      .default("info"),
  }).transform((s): Pick<Config, "host" | "port" | "logLevel"> => ({
    host: s.HOST,
    port: s.PORT,
    logLevel: s.LOG_LEVEL,
  }));

/** Socket-level bounds. */
export const http = settings({
  HTTP_REQUEST_TIMEOUT_MS: int(10_000, 100, 600_000),
  HTTP_HEADERS_TIMEOUT_MS: int(5_000, 100, 600_000),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: int(5_000, 100, 600_000),
  HTTP_MAX_CONNECTIONS: int(1024, 1, 1_000_000),
})
  // Node's HTTP server refuses a headers timeout above the request timeout (a RangeError at
  // listen); said here, with the other problems, instead.
  .refine((s) => s.HTTP_HEADERS_TIMEOUT_MS <= s.HTTP_REQUEST_TIMEOUT_MS, {
    path: ["HTTP_HEADERS_TIMEOUT_MS"],
    message: "must not exceed HTTP_REQUEST_TIMEOUT_MS",
    ...whenParsed("HTTP_HEADERS_TIMEOUT_MS", "HTTP_REQUEST_TIMEOUT_MS"),
  })
  .transform((s): Pick<Config, "http"> => ({
    http: {
      requestTimeoutMs: s.HTTP_REQUEST_TIMEOUT_MS,
      headersTimeoutMs: s.HTTP_HEADERS_TIMEOUT_MS,
      keepAliveTimeoutMs: s.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      maxConnections: s.HTTP_MAX_CONNECTIONS,
    },
  }));

/** The stop after SIGTERM. */
export const shutdown = settings({ SHUTDOWN_DRAIN_DELAY_MS: int(0, 0, 120_000) }).transform(
  (s): Pick<Config, "shutdownDrainDelayMs"> => ({
    shutdownDrainDelayMs: s.SHUTDOWN_DRAIN_DELAY_MS,
  }),
);

/**
 * ACSGW_TEST_EXIT_AFTER_STEP, the crash tests' hook: a test hook rather than a setting, so it is
 * read from the whole environment (not the list of settings) and ignored in production, where
 * no test may make the process exit.
 */
export const testHooks = ({ production }: Decisions) =>
  production
    ? ignored<Pick<Config, "testExitAfterStep">>({ testExitAfterStep: undefined })
    : z
        .object({
          ACSGW_TEST_EXIT_AFTER_STEP: z.preprocess(
            (v) => (typeof v === "string" && v.trim() !== "" ? v.trim() : undefined),
            z.enum(["reserved", "recorded"], { error: "must be reserved or recorded" }).optional(),
          ),
        })
        .transform((s): Pick<Config, "testExitAfterStep"> => ({
          testExitAfterStep: s.ACSGW_TEST_EXIT_AFTER_STEP,
        }));
