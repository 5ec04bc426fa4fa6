/**
 * The ACS emulator in its own process for the benchmark (its RSA signing must not run on the
 * gateway's core), configured from the usual `ACS_EMULATOR_*` variables. Prints the connection
 * string line like `npm run emulator`, and answers `"counters"` over IPC with how many calls of
 * each operation it served, which is how the benchmark counts upstream calls.
 */
import { emulatorOptionsFromEnv, startEmulator } from "@acs-identity-gateway/emulator";

const emulator = await startEmulator({ ...emulatorOptionsFromEnv(process.env), port: 0 });
process.stdout.write(`COMMUNICATION_SERVICES_CONNECTION_STRING=${emulator.connectionString}\n`);
process.on("message", (message) => {
  if (message === "counters") {
    process.send?.({ counters: { ...emulator.counters } });
  }
});
process.once("SIGTERM", () => {
  emulator.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
