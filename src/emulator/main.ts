/**
 * `npm run emulator`: the emulator alone. Prints exactly one stdout line once it listens (scripts
 * read it to find the port when ACS_EMULATOR_PORT=0); everything else goes to stderr as pino logs.
 */
import { createLogger } from "../logger.js";
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
  process.stdout.write(`COMMUNICATION_SERVICES_CONNECTION_STRING=${emulator.connectionString}\n`);

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
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
} catch (error) {
  // e.g. EADDRINUSE or an unreadable signing key: say which, without the settings' values.
  console.error(
    `the emulator could not start: ${error instanceof Error ? error.message : String(error)}`,
  );
  process.exit(1);
}
