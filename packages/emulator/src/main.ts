#!/usr/bin/env node
/**
 * `acs-identity-emulator` (and `npm run emulator`): the emulator alone, flags in cli.ts. Once it
 * listens it prints the connection string line on stdout (scripts read it to find the port with
 * `--port 0`), then the lines of the modes in use (`IDENTITY_ENDPOINT=`, `IDENTITY_HEADER=` with
 * Entra ID); everything else goes to stderr as pino logs.
 */
import { runEmulatorCommand } from "./cli.js";

await runEmulatorCommand(process.argv.slice(2));
