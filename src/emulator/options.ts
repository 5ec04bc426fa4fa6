import { readFileSync } from "node:fs";
import type { Logger } from "../logger.js";

/** The operations the emulator answers; the keys of `Emulator.counters`. */
export type EmulatorOperation =
  | "createIdentity"
  | "issueAccessToken"
  | "revokeAccessTokens"
  | "deleteIdentity"
  | "exchangeTeamsUserAccessToken"
  | "introspect";

export const EMULATOR_OPERATIONS: readonly EmulatorOperation[] = [
  "createIdentity",
  "issueAccessToken",
  "revokeAccessTokens",
  "deleteIdentity",
  "exchangeTeamsUserAccessToken",
  "introspect",
];

/**
 * The well-known DEVELOPMENT access key (64 random bytes, base64, the shape of a real ACS key).
 * Public on purpose, like Azurite's account key: it protects nothing but a loopback emulator and
 * lets every developer and test share one connection string. Never use it for anything real.
 */
export const EMULATOR_WELL_KNOWN_ACCESS_KEY =
  "2E8l67W2ZR5+tEzcGityRFDsQ8WrKmLo4lqT9ykPYeGGHy+9fYV0JQAER4H/rZOT8rNwdBsoAU2JbmXiwCV4cw==";

/** The resource GUID that forms every identity id (`8:acs:<this>_<user part>`) unless set. */
export const EMULATOR_DEFAULT_RESOURCE_ID = "5c6fe286-6348-4310-9cd1-6980234eb6c2";

/** The fixed port `npm run emulator` and the in-process emulator use unless told otherwise. */
export const EMULATOR_DEFAULT_PORT = 10500;
export const EMULATOR_DEFAULT_HOST = "127.0.0.1";

/** The only api-version the emulator speaks (the one `@azure/communication-identity` 1.3 sends). */
export const EMULATOR_API_VERSION = "2023-10-01";

export interface EmulatorOptions {
  /** @default "127.0.0.1" */
  host?: string;
  /** `0` = any free port (read it from `Emulator.endpoint`). @default 10500 */
  port?: number;
  /** Base64. @default EMULATOR_WELL_KNOWN_ACCESS_KEY */
  accessKey?: string;
  /** GUID: the resource part of every identity id. @default EMULATOR_DEFAULT_RESOURCE_ID */
  resourceId?: string;
  /** Added before every answer, to make a slow upstream visible. @default 0 */
  latencyMs?: number;
  /** `acs`: enforce the published per-30-second Identity limits with 429 + Retry-After. @default "off" */
  throttle?: "off" | "acs";
  /** PKCS#8 RSA private key PEM the tokens are signed with. @default a key generated at start */
  signingKeyPem?: string;
  /**
   * The emulator's clock (epoch ms) for token times, revocation and throttle windows. The `x-ms-date`
   * skew check deliberately uses the wall clock: the SDK signs with the machine's real time, so a
   * test that moves this clock hours ahead must still be able to call the emulator.
   * @default Date.now
   */
  now?: () => number;
  /** @default silent */
  logger?: Logger;
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

export function isGuid(value: string): boolean {
  return GUID.test(value);
}

/** A problem string for a bad access key, or undefined. Never echoes the key. */
export function accessKeyProblem(key: string): string | undefined {
  if (!BASE64.test(key) || key.length % 4 !== 0 || Buffer.from(key, "base64").length < 16) {
    return "must be base64 of at least 16 bytes";
  }
  return undefined;
}

/** Every problem with `options`, so a caller hears of all of them at once. */
export function optionProblems(options: EmulatorOptions): string[] {
  const problems: string[] = [];
  if (
    options.port !== undefined &&
    (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535)
  ) {
    problems.push("port: must be a whole number from 0 to 65535");
  }
  if (options.accessKey !== undefined) {
    const problem = accessKeyProblem(options.accessKey);
    if (problem) {
      problems.push(`accessKey: ${problem}`);
    }
  }
  if (options.resourceId !== undefined && !isGuid(options.resourceId)) {
    problems.push("resourceId: must be a GUID");
  }
  if (
    options.latencyMs !== undefined &&
    (!Number.isFinite(options.latencyMs) || options.latencyMs < 0 || options.latencyMs > 60_000)
  ) {
    problems.push("latencyMs: must be a number from 0 to 60000");
  }
  if (options.throttle !== undefined && options.throttle !== "off" && options.throttle !== "acs") {
    problems.push('throttle: must be "off" or "acs"');
  }
  return problems;
}

type Env = Record<string, string | undefined>;

/**
 * Reads `ACS_EMULATOR_HOST`, `_PORT`, `_ACCESS_KEY`, `_RESOURCE_ID`, `_LATENCY_MS`, `_THROTTLE` and
 * `_SIGNING_KEY_FILE`. An empty string counts as unset (docker-compose passes `FOO=`). Throws one
 * Error listing every problem; never echoes the access key or the key file's content.
 */
export function emulatorOptionsFromEnv(env: Env = process.env): EmulatorOptions {
  const value = (name: string) => (env[name] === "" ? undefined : env[name]);
  const problems: string[] = [];
  const options: EmulatorOptions = {};

  const host = value("ACS_EMULATOR_HOST");
  if (host !== undefined) {
    options.host = host;
  }
  const port = value("ACS_EMULATOR_PORT");
  if (port !== undefined) {
    if (/^\d{1,5}$/.test(port) && Number(port) <= 65535) {
      options.port = Number(port);
    } else {
      problems.push("ACS_EMULATOR_PORT: must be a whole number from 0 to 65535");
    }
  }
  const accessKey = value("ACS_EMULATOR_ACCESS_KEY");
  if (accessKey !== undefined) {
    const problem = accessKeyProblem(accessKey);
    if (problem) {
      problems.push(`ACS_EMULATOR_ACCESS_KEY: ${problem}`);
    } else {
      options.accessKey = accessKey;
    }
  }
  const resourceId = value("ACS_EMULATOR_RESOURCE_ID");
  if (resourceId !== undefined) {
    if (isGuid(resourceId)) {
      options.resourceId = resourceId.toLowerCase();
    } else {
      problems.push("ACS_EMULATOR_RESOURCE_ID: must be a GUID");
    }
  }
  const latency = value("ACS_EMULATOR_LATENCY_MS");
  if (latency !== undefined) {
    if (/^\d{1,5}$/.test(latency) && Number(latency) <= 60_000) {
      options.latencyMs = Number(latency);
    } else {
      problems.push("ACS_EMULATOR_LATENCY_MS: must be a whole number from 0 to 60000");
    }
  }
  const throttle = value("ACS_EMULATOR_THROTTLE");
  if (throttle !== undefined) {
    if (throttle === "off" || throttle === "acs") {
      options.throttle = throttle;
    } else {
      problems.push('ACS_EMULATOR_THROTTLE: must be "off" or "acs"');
    }
  }
  const keyFile = value("ACS_EMULATOR_SIGNING_KEY_FILE");
  if (keyFile !== undefined) {
    try {
      options.signingKeyPem = readFileSync(keyFile, "utf8");
    } catch (error) {
      problems.push(
        `ACS_EMULATOR_SIGNING_KEY_FILE: cannot read ${keyFile} (${(error as NodeJS.ErrnoException).code ?? "error"})`,
      );
    }
  }

  if (problems.length > 0) {
    throw new Error(`invalid emulator settings:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
  return options;
}
