import { readFileSync } from "node:fs";
import type { LevelWithSilent } from "pino";
import { z } from "zod";
import type { Logger } from "./logger.js";
import { isGuid } from "./rules.js";
import {
  ACS_THROTTLE_LIMITS,
  ACS_THROTTLE_WINDOW_MS,
  type ThrottleBucket,
  type ThrottleSettings,
} from "./throttle.js";

export { EMULATOR_API_VERSION } from "./api-versions.js";

/** The operations of the `/access/*` areas (Entra users, Teams Phone extension users). */
export const ACCESS_OPERATIONS = [
  "exchangeEntraAccessToken",
  "exchangeTeamsExtensionAccessToken",
  "listEntraAssignments",
  "updateEntraAssignments",
  "getEntraAssignment",
  "upsertEntraAssignment",
  "deleteEntraAssignment",
  "getTeamsExtensionAssignment",
  "upsertTeamsExtensionAssignment",
  "deleteTeamsExtensionAssignment",
] as const;

/** The operations the emulator answers; the keys of `Emulator.counters`. */
export const EMULATOR_OPERATIONS = [
  "createIdentity",
  "getIdentity",
  "updateIdentity",
  "issueAccessToken",
  "revokeAccessTokens",
  "deleteIdentity",
  "exchangeTeamsUserAccessToken",
  "introspect",
  "listIdentities",
  "reset",
  ...ACCESS_OPERATIONS,
] as const;

export type EmulatorOperation = (typeof EMULATOR_OPERATIONS)[number];

/** The longest revocation delay: the real service's revokes take up to 15 minutes to propagate. */
export const MAX_REVOCATION_DELAY_SECONDS = 900;

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

export type EntraMode = "off" | "on" | "any";

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
  /**
   * `acs`: enforce the published per-30-second Identity limits with 429 + Retry-After. An object
   * does the same with some limits or the window overridden (a test needs a handful of calls, not
   * 1,000). @default "off"
   */
  throttle?:
    "off" | "acs" | { limits?: Partial<Record<ThrottleBucket, number>>; windowMs?: number };
  /** PKCS#8 RSA private key PEM the tokens are signed with. @default a key generated at start */
  signingKeyPem?: string;
  /** PEM certificate chain and private key: listen with TLS (`https://` endpoint). */
  tls?: { cert: string; key: string };
  /**
   * `on`: also accept `Authorization: Bearer` tokens minted by the emulator's own managed-identity
   * endpoint; `any`: also any unexpired JWT for `https://communication.azure.com`, signature
   * unchecked. @default "off"
   */
  entra?: EntraMode;
  /** Verify the Teams exchange's Entra token against this JWKS (signature and issuer). */
  teamsJwksUrl?: string;
  /** Persist identities, deletions and revocations (and the signing key) to this JSON file. */
  stateFile?: string;
  /**
   * Like Azurite's `--loose`: an api-version the emulator does not know gets its newest surface
   * instead of 400 `UnsupportedApiVersion`. @default false
   */
  loose?: boolean;
  /**
   * Seconds a revoke takes to reach the tokens it revokes (0..900): until then they stay active,
   * as on the real service, which may take up to 15 minutes. Deleting an identity still takes
   * effect at once. Measured with `now`. @default 0
   */
  revocationDelaySeconds?: number;
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

/** Options after validation and defaults: what the pipeline runs on. */
export interface ResolvedOptions {
  host: string;
  port: number;
  accessKey: string;
  resourceId: string;
  latencyMs: number;
  throttle: ThrottleSettings | undefined;
  signingKeyPem?: string;
  tls?: { cert: string; key: string };
  entra: EntraMode;
  teamsJwksUrl?: string;
  stateFile?: string;
  loose: boolean;
  revocationDelaySeconds: number;
  now: () => number;
  logger?: Logger;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

const accessKeySchema = z.string().refine(
  (key) => BASE64.test(key) && key.length % 4 === 0 && Buffer.from(key, "base64").length >= 16,
  // Never echo the key.
  { message: "must be base64 of at least 16 bytes" },
);

const limitSchema = z.number().int().min(1).max(1_000_000);

const optionsSchema = z.strictObject({
  host: z.string().min(1).default(EMULATOR_DEFAULT_HOST),
  port: z.number().int().min(0).max(65535).default(EMULATOR_DEFAULT_PORT),
  accessKey: accessKeySchema.default(EMULATOR_WELL_KNOWN_ACCESS_KEY),
  resourceId: z
    .string()
    .refine(isGuid, { message: "must be a GUID" })
    .transform((v) => v.toLowerCase())
    .default(EMULATOR_DEFAULT_RESOURCE_ID),
  latencyMs: z.number().min(0).max(60_000).default(0),
  throttle: z
    .union([
      z.enum(["off", "acs"]),
      z.strictObject({
        limits: z
          .strictObject({
            createIdentity: limitSchema.optional(),
            createIdentityWithToken: limitSchema.optional(),
            issueAccessToken: limitSchema.optional(),
            revokeAccessTokens: limitSchema.optional(),
            deleteIdentity: limitSchema.optional(),
            exchangeTeamsUserAccessToken: limitSchema.optional(),
          })
          .optional(),
        windowMs: z.number().int().min(1000).max(3_600_000).optional(),
      }),
    ])
    .default("off")
    .transform((t): ThrottleSettings | undefined => {
      if (t === "off") {
        return undefined;
      }
      if (t === "acs") {
        return { limits: { ...ACS_THROTTLE_LIMITS }, windowMs: ACS_THROTTLE_WINDOW_MS };
      }
      const limits = { ...ACS_THROTTLE_LIMITS } as Record<ThrottleBucket, number>;
      for (const [bucket, limit] of Object.entries(t.limits ?? {})) {
        if (limit !== undefined) {
          limits[bucket as ThrottleBucket] = limit;
        }
      }
      return { limits, windowMs: t.windowMs ?? ACS_THROTTLE_WINDOW_MS };
    }),
  signingKeyPem: z.string().min(1).optional(),
  tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
  entra: z.enum(["off", "on", "any"]).default("off"),
  teamsJwksUrl: z.url({ protocol: /^https?$/, message: "must be an http(s) URL" }).optional(),
  stateFile: z.string().min(1).optional(),
  loose: z.boolean().default(false),
  revocationDelaySeconds: z.number().int().min(0).max(MAX_REVOCATION_DELAY_SECONDS).default(0),
  now: z.custom<() => number>((v) => typeof v === "function").default(() => Date.now),
  logger: z.custom<Logger>((v) => typeof v === "object" && v !== null).optional(),
});

const describe = (error: z.ZodError, prefix: (path: string) => string) =>
  error.issues.map((issue) => `  - ${prefix(issue.path.join("."))}: ${issue.message}`).join("\n");

/** Validates and fills defaults; throws one Error listing every problem (never a key's value). */
export function resolveOptions(options: EmulatorOptions): ResolvedOptions {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) {
    throw new Error(`invalid emulator options:\n${describe(parsed.error, (p) => p)}`);
  }
  return parsed.data;
}

type Env = Record<string, string | undefined>;

/** The variable of each setting (the `acs-identity-emulator` command's flags name these too). */
export const ENV_NAMES = {
  host: "ACS_EMULATOR_HOST",
  port: "ACS_EMULATOR_PORT",
  accessKey: "ACS_EMULATOR_ACCESS_KEY",
  resourceId: "ACS_EMULATOR_RESOURCE_ID",
  latencyMs: "ACS_EMULATOR_LATENCY_MS",
  throttle: "ACS_EMULATOR_THROTTLE",
  entra: "ACS_EMULATOR_ENTRA",
  teamsJwksUrl: "ACS_EMULATOR_TEAMS_JWKS_URL",
  stateFile: "ACS_EMULATOR_STATE_FILE",
  signingKeyFile: "ACS_EMULATOR_SIGNING_KEY_FILE",
  tlsCert: "ACS_EMULATOR_TLS_CERT",
  tlsKey: "ACS_EMULATOR_TLS_KEY",
  loose: "ACS_EMULATOR_LOOSE",
  revocationDelaySeconds: "ACS_EMULATOR_REVOCATION_DELAY_S",
} as const;

export type EmulatorSetting = keyof typeof ENV_NAMES;

/** Every problem of the settings, one line each (never a key's value or a file's content). */
export class EmulatorSettingsError extends Error {
  override readonly name = "EmulatorSettingsError";
  constructor(readonly problems: readonly string[]) {
    super(`invalid emulator settings:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

const wholeNumber = (max: number) =>
  z
    .string()
    .regex(/^\d{1,7}$/, { message: `must be a whole number from 0 to ${max}` })
    .transform(Number)
    .pipe(z.number().max(max, { message: `must be a whole number from 0 to ${max}` }));

const envSchema = z.object({
  host: z.string().optional(),
  port: wholeNumber(65535).optional(),
  accessKey: accessKeySchema.optional(),
  resourceId: z
    .string()
    .refine(isGuid, { message: "must be a GUID" })
    .transform((v) => v.toLowerCase())
    .optional(),
  latencyMs: wholeNumber(60_000).optional(),
  throttle: z.enum(["off", "acs"], { message: 'must be "off" or "acs"' }).optional(),
  entra: z.enum(["off", "on", "any"], { message: 'must be "off", "on" or "any"' }).optional(),
  teamsJwksUrl: z.url({ protocol: /^https?$/, message: "must be an http(s) URL" }).optional(),
  stateFile: z.string().optional(),
  signingKeyFile: z.string().optional(),
  tlsCert: z.string().optional(),
  tlsKey: z.string().optional(),
  // As the gateway's switches (docs/configuration.md): true or false, or 1 or 0.
  loose: z
    .enum(["true", "false", "1", "0"], { message: "must be true or false (or 1 or 0)" })
    .transform((v) => v === "true" || v === "1")
    .optional(),
  revocationDelaySeconds: wholeNumber(MAX_REVOCATION_DELAY_SECONDS).optional(),
});

/**
 * Reads the `ACS_EMULATOR_*` settings (docs/configuration.md, "Emulator settings"), every one of
 * ENV_NAMES. An empty string counts as unset (docker-compose passes `FOO=`).
 * Throws one EmulatorSettingsError listing every problem, each under `label(variable)` (the
 * command's flag when a flag gave the value); never echoes the access key or a file's content.
 */
export function emulatorOptionsFromEnv(
  env: Env = process.env,
  label: (variable: string) => string = (variable) => variable,
): EmulatorOptions {
  const name = (field: EmulatorSetting) => label(ENV_NAMES[field]);
  const raw: Record<string, string | undefined> = {};
  for (const [field, name] of Object.entries(ENV_NAMES)) {
    raw[field] = env[name] === "" ? undefined : env[name];
  }
  const problems: string[] = [];
  const parsed = envSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const field = String(issue.path[0]) as EmulatorSetting;
      problems.push(`${name(field)}: ${issue.message}`);
    }
  }
  // Files are read even when other settings are wrong, so one run reports every problem.
  const e = parsed.success ? parsed.data : (raw as z.infer<typeof envSchema>);
  const readPem = (name: string, file: string): string | undefined => {
    try {
      return readFileSync(file, "utf8");
    } catch (error) {
      problems.push(
        `${name}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? "error"})`,
      );
      return undefined;
    }
  };

  const options: EmulatorOptions = {};
  const tlsHalf = (e.tlsCert === undefined) !== (e.tlsKey === undefined);
  if (tlsHalf) {
    problems.push(`${name("tlsCert")} and ${name("tlsKey")}: set both or neither`);
  }
  if (!parsed.success) {
    if (e.signingKeyFile !== undefined) {
      readPem(name("signingKeyFile"), e.signingKeyFile);
    }
    if (e.tlsCert !== undefined) {
      readPem(name("tlsCert"), e.tlsCert);
    }
    if (e.tlsKey !== undefined) {
      readPem(name("tlsKey"), e.tlsKey);
    }
    throw new EmulatorSettingsError(problems);
  }
  if (e.host !== undefined) {
    options.host = e.host;
  }
  if (e.port !== undefined) {
    options.port = e.port;
  }
  if (e.accessKey !== undefined) {
    options.accessKey = e.accessKey;
  }
  if (e.resourceId !== undefined) {
    options.resourceId = e.resourceId;
  }
  if (e.latencyMs !== undefined) {
    options.latencyMs = e.latencyMs;
  }
  if (e.throttle !== undefined) {
    options.throttle = e.throttle;
  }
  if (e.entra !== undefined) {
    options.entra = e.entra;
  }
  if (e.teamsJwksUrl !== undefined) {
    options.teamsJwksUrl = e.teamsJwksUrl;
  }
  if (e.stateFile !== undefined) {
    options.stateFile = e.stateFile;
  }
  if (e.loose !== undefined) {
    options.loose = e.loose;
  }
  if (e.revocationDelaySeconds !== undefined) {
    options.revocationDelaySeconds = e.revocationDelaySeconds;
  }
  if (e.signingKeyFile !== undefined) {
    options.signingKeyPem = readPem(name("signingKeyFile"), e.signingKeyFile);
  }
  if (!tlsHalf && e.tlsCert !== undefined && e.tlsKey !== undefined) {
    const cert = readPem(name("tlsCert"), e.tlsCert);
    const key = readPem(name("tlsKey"), e.tlsKey);
    if (cert !== undefined && key !== undefined) {
      options.tls = { cert, key };
    }
  }
  if (problems.length > 0) {
    throw new EmulatorSettingsError(problems);
  }
  return options;
}

/** The standalone command's own log level; `LOG_LEVEL` (the gateway's) when it is unset. */
export const LOG_LEVEL_VARIABLE = "ACS_EMULATOR_LOG_LEVEL";
/** pino's levels, and `silent`. */
export const LOG_LEVELS = [
  "fatal",
  "error",
  "warn",
  "info",
  "debug",
  "trace",
  "silent",
] as const satisfies readonly LevelWithSilent[];
/** The level when neither `ACS_EMULATOR_LOG_LEVEL` (`--log-level`) nor `LOG_LEVEL` is set. */
export const DEFAULT_LOG_LEVEL = "info";

/**
 * What the command's flags stand for: every setting of ENV_NAMES, and its own log level (not an
 * option of `startEmulator`, which takes a logger: the embedded emulator logs with the gateway's).
 */
export type EmulatorCommandSetting = EmulatorSetting | "logLevel";

export interface EmulatorCommandSettings {
  options: EmulatorOptions;
  /** pino's level for the logs on stderr. */
  logLevel: LevelWithSilent;
}

/**
 * The settings of the `acs-identity-emulator` command: each flag given stands for its variable and
 * wins over it (`flags`: the setting, the flag's name for the problems, its value), then the
 * environment. The one place the package reads its environment (`env` defaults to
 * `process.env`). Throws one EmulatorSettingsError listing every problem.
 */
export function emulatorCommandSettings(
  flags: Partial<Record<EmulatorCommandSetting, { flag: string; value: string }>>,
  env: Env = process.env,
): EmulatorCommandSettings {
  const merged: Env = { ...env };
  const flagOf = new Map<string, string>();
  for (const [field, given] of Object.entries(flags)) {
    const variable =
      field === "logLevel" ? LOG_LEVEL_VARIABLE : ENV_NAMES[field as EmulatorSetting];
    merged[variable] = given.value;
    flagOf.set(variable, given.flag);
  }
  const problems: string[] = [];
  let options: EmulatorOptions = {};
  try {
    options = emulatorOptionsFromEnv(merged, (variable) => flagOf.get(variable) ?? variable);
  } catch (error) {
    if (!(error instanceof EmulatorSettingsError)) {
      throw error;
    }
    problems.push(...error.problems);
  }
  // LOG_LEVEL as a fallback: the level `npm run emulator` honoured before it had its own variable.
  const levelVariable = merged[LOG_LEVEL_VARIABLE] ? LOG_LEVEL_VARIABLE : "LOG_LEVEL";
  const level = merged[levelVariable] || DEFAULT_LOG_LEVEL;
  const logLevel = LOG_LEVELS.find((known) => known === level);
  if (logLevel === undefined) {
    problems.push(
      `${flagOf.get(levelVariable) ?? levelVariable}: must be one of ${LOG_LEVELS.join(", ")}`,
    );
  }
  if (problems.length > 0 || logLevel === undefined) {
    throw new EmulatorSettingsError(problems);
  }
  return { options, logLevel };
}
