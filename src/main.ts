import "reflect-metadata";
import { setFlagsFromString } from "node:v8";
import { createApp } from "./app.js";
import { ConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { createMetrics } from "./server/metrics.js";
import { registerStoppingReadiness } from "./server/plugins/stopping.js";
import { startTracingWith } from "./telemetry/tracing.js";

/**
 * V8 lets the old generation grow to several times its live size between full collections while
 * collecting is cheap: after 20,000 distinct query texts a gateway with 40 MB live held about
 * 160 MB of heap, and its RSS grew by 90-120 MB and stayed there. Growing by at most 50% keeps
 * that growth near 30 MB. (30% kept it near 20 MB but made full collections frequent enough under
 * the token path's load to raise its p99 by a third.) The young generation's size, which decides
 * how much of a request's garbage is promoted at all, can only be set on node's command line
 * (`--max-semi-space-size=32` in `npm start`, `start:prod` and the Dockerfile). A
 * `--heap-growing-percent` given on node's command line wins.
 */
const HEAP_GROWING_PERCENT = 50;

/** The only module with start-up side effects: config, wiring, listen, signals. */
async function main(): Promise<void> {
  if (!process.execArgv.some((arg) => arg.startsWith("--heap-growing-percent"))) {
    setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  }
  let config;
  try {
    // The process's environment, read in config.ts alone; everything below receives values.
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
  const tracingLogger = createLogger({ level: config.logLevel }).child({ component: "tracing" });
  const tracing = await startTracingWith(config.tracing, {
    onProblem: (message) => tracingLogger.warn({ detail: message }, "trace export problem"),
  });
  const logger = createLogger({ level: config.logLevel });
  const embedded = config.embeddedEmulator !== undefined;

  // Process and Node metrics (event loop lag, heap, GC, handles) only for the real process: tests
  // create many apps in one process.
  const metrics = createMetrics({ defaultMetrics: true });
  const app = await createApp(config, { logger, metrics });
  const stopping = registerStoppingReadiness(app.server.fastify);
  const stop = (signal: string) => {
    if (stopping.stopping) {
      return;
    }
    stopping.begin();
    const drainMs = config.shutdownDrainDelayMs;
    logger.info({ signal, drainMs }, "shutting down");
    // The drain delay plus 10 s for in-flight requests, Redis and the exporter's last flush.
    const force = setTimeout(() => {
      logger.error("shutdown took too long; exiting");
      process.exit(1);
    }, drainMs + 10_000);
    force.unref();
    // Keep serving during the delay (only /readyz says 503): a load balancer that has not yet
    // noticed the stop would otherwise send requests to a closed port.
    const drained = new Promise<void>((resolve) => setTimeout(resolve, drainMs));
    drained
      .then(() => app.close())
      .then(() => tracing?.shutdown())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error(
            { err: error instanceof Error ? error.message : String(error) },
            "error while shutting down",
          );
          process.exit(1);
        },
      );
  };
  // Before listening: the "ready" line tells process managers (and tests) that a signal is now
  // handled; one arriving before a handler exists would kill the process on the spot.
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));

  const url = await app.listen();
  const upstream = embedded
    ? `the embedded ACS emulator at ${app.acs.endpoint}`
    : new URL(app.acs.endpoint).host;
  const sandbox = config.production
    ? ""
    : " (open it in a browser for the GraphiQL explorer; Apollo Sandbox at /sandbox)";
  logger.info(
    { url, upstream, cache: config.redis.mode, tracing: tracing !== undefined },
    `ACS identity gateway ready at ${url}${sandbox}, using ${upstream}`,
  );
}

main().catch((error: unknown) => {
  console.error("the gateway failed to start:", error instanceof Error ? error.message : error);
  process.exit(1);
});
