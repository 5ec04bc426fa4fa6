/**
 * The ACS Identity emulator (api-version 2023-10-01): see docs/emulator.md.
 */
export { startEmulator, MAX_BODY_BYTES, type Emulator } from "./emulator.js";
export {
  emulatorOptionsFromEnv,
  EMULATOR_API_VERSION,
  EMULATOR_DEFAULT_HOST,
  EMULATOR_DEFAULT_PORT,
  EMULATOR_DEFAULT_RESOURCE_ID,
  EMULATOR_WELL_KNOWN_ACCESS_KEY,
  type EmulatorOperation,
  type EmulatorOptions,
} from "./options.js";
export { ACS_THROTTLE_LIMITS } from "./throttle.js";
