import "reflect-metadata";
import { createApp } from "./app.js";
import { ConfigError, loadConfig } from "./config.js";
import { emulatorOptionsFromEnv } from "./emulator/index.js";
import { createLogger } from "./logger.js";

/** The only module with start-up side effects: config, wiring, listen, signals. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger({ level: config.logLevel });

  const embedded = config.acs === undefined;
  const emulator = embedded ? embeddedEmulatorOptions() : undefined;

  const app = await createApp(config, { logger, emulator });
  const url = await app.listen();
  const upstream = embedded
    ? `the embedded ACS emulator at ${app.acs.endpoint}`
    : new URL(app.acs.endpoint).host;
  const sandbox = config.production ? "" : " (open it in a browser for Apollo Sandbox)";
  logger.info(
    { url, upstream, cache: config.redis.mode },
    `ACS identity gateway ready at ${url}${sandbox}, using ${upstream}`,
  );

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      return;
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

/**
 * The standalone emulator's settings, as far as they make sense in process: the embedded one
 * keeps plain loopback HTTP and access-key signing (TLS and Entra ID modes are for clients that
 * need them, which talk to `npm run emulator`), and a free port unless ACS_EMULATOR_PORT is set, so
 * it never clashes with a standalone emulator on the documented port.
 */
function embeddedEmulatorOptions() {
  const { tls: _tls, entra: _entra, ...options } = emulatorOptionsFromEnv(process.env);
  return { ...options, ...(process.env.ACS_EMULATOR_PORT ? {} : { port: 0 }) };
}

main().catch((error: unknown) => {
  console.error("the gateway failed to start:", error instanceof Error ? error.message : error);
  process.exit(1);
});
