/**
 * The ACS Identity emulator (every api-version in api-versions.ts): see docs/emulator.md.
 */
export {
  startEmulator,
  MAX_BODY_BYTES,
  type Emulator,
  type RespondInfo,
  type RespondOverride,
} from "./emulator.js";
export {
  emulatorOptionsFromEnv,
  EMULATOR_API_VERSION,
  EMULATOR_DEFAULT_HOST,
  EMULATOR_DEFAULT_PORT,
  EMULATOR_DEFAULT_RESOURCE_ID,
  EMULATOR_WELL_KNOWN_ACCESS_KEY,
  type EmulatorOperation,
  type EmulatorOptions,
  type EntraMode,
} from "./options.js";
export { ANSWERED_API_VERSIONS, SUPPORTED_API_VERSIONS } from "./api-versions.js";
export { ACS_THROTTLE_LIMITS } from "./throttle.js";
export {
  EMULATOR_CLIENT_ID,
  EMULATOR_MANAGED_IDENTITY_CLIENT_ID,
  EMULATOR_TENANT_ID,
  EMULATOR_USER_OBJECT_ID,
  EMULATOR_USERNAME,
  MANAGED_IDENTITY_PATH,
  type EmulatorEntraAuthority,
} from "./entra.js";
