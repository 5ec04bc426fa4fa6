import { unsignedJwt } from "./jwt.js";

/** The Teams app and user the JavaScript SDK suite (js-sdk-suite.ts) exchanges a token for. */
const APP_ID = "2f6a5b5e-1c55-4d8f-9f0d-3a3b6c9a7e11";
const USER_ID = "9c7d3f1a-7b6e-4f0b-8e2a-5d4c3b2a1f00";

/**
 * The environment js-sdk-suite.ts runs in: the emulator to call, the CA to trust (nothing else),
 * and an Entra-shaped Teams token for its Teams exchange, valid for an hour.
 */
export function jsSdkSuiteEnv(options: {
  caFile: string;
  connectionString: string;
}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    NODE_EXTRA_CA_CERTS: options.caFile,
    COMMUNICATION_SERVICES_CONNECTION_STRING: options.connectionString,
    TEAMS_AAD_TOKEN: unsignedJwt({
      appid: APP_ID,
      oid: USER_ID,
      exp: Math.floor(Date.now() / 1000) + 3600,
    }),
    TEAMS_APP_ID: APP_ID,
    TEAMS_USER_ID: USER_ID,
  };
}
