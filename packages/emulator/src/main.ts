#!/usr/bin/env node
/**
 * `npm run emulator`: the emulator alone. Once it listens it prints the connection string line on
 * stdout (scripts read it to find the port when ACS_EMULATOR_PORT=0) and, with ACS_EMULATOR_ENTRA,
 * an `IDENTITY_ENDPOINT=` and an `IDENTITY_HEADER=` line after it; everything else goes to stderr
 * as pino logs.
 */
import { createLogger } from "./logger.js";
import { emulatorOptionsFromEnv, startEmulator, type EmulatorOptions } from "./index.js";

let options: EmulatorOptions;
try {
  options = emulatorOptionsFromEnv(process.env);
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
}

const level = process.env.LOG_LEVEL || "info";
const logger = createLogger({ level, name: "acs-emulator" }, process.stderr);

try {
  const emulator = await startEmulator({ ...options, logger });
  // Handlers first, then the line: whoever reads the line may signal at once.
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      return;
    }
    stopping = true;
    logger.info({ signal }, "stopping the emulator");
    emulator.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);

  let lines = `COMMUNICATION_SERVICES_CONNECTION_STRING=${emulator.connectionString}\n`;
  if (emulator.managedIdentity) {
    lines += `IDENTITY_ENDPOINT=${emulator.managedIdentity.endpoint}\n`;
    lines += `IDENTITY_HEADER=${emulator.managedIdentity.header}\n`;
  }
  process.stdout.write(lines);
} catch (error) {
  // e.g. EADDRINUSE or an unreadable signing key: say which, without the settings' values.
  console.error(
    `the emulator could not start: ${error instanceof Error ? error.message : String(error)}`,
  );
  process.exit(1);
}
