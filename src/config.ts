import { emulatorOptionsFromEnv, type EmulatorOptions } from "@acs-identity-gateway/emulator";
import { z } from "zod";
import {
  entraCredentialOptions,
  type EntraCredentialOptions,
} from "./identity/entra-credential.js";
import { parseCorsOrigins, type CorsPolicy } from "./server/cors-policy.js";
import {
  TracingConfigError,
  tracingSettingsFromEnv,
  type TracingSettings,
} from "./telemetry/tracing.js";

/**
 * Environment -> one frozen, validated Config. Every problem is collected and reported at once, so a
 * misconfigured deployment fails on its first start with the whole list instead of one per restart.
 * An empty string counts as unset (docker-compose and Kubernetes often pass `FOO=`).
 *
 * This is the only module of the gateway that reads the environment (a lint rule holds the rest
 * to it): the embedded emulator's `ACS_EMULATOR_*` settings (through the emulator package's own
 * reader), the standard `OTEL_*` trace settings and the `AZURE_*` authority host are read here
 * too, so every start-up problem is in the one list and everything below receives values.
 * (`@azure/identity` and the OTLP exporter still read their own variables, as libraries do.)
 */

export interface AcsConnection {
  endpoint: string;
  accessKey: string;
}

export interface Config {
  nodeEnv: "development" | "production" | "test";
  production: boolean;
  host: string;
  port: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** `undefined`: the embedded emulator (`embeddedEmulator`), or Entra ID (`acsEntraEndpoint`). */
  acs: AcsConnection | undefined;
  /**
   * Set exactly when the gateway starts the bundled emulator in-process (no connection string and
   * no ACS_ENDPOINT): its options from the `ACS_EMULATOR_*` settings, decided here once. The
   * embedded one stays plain loopback HTTP with access-key signing (TLS and Entra ID modes are for
   * clients that talk to `npm run emulator`), on a free port unless ACS_EMULATOR_PORT is set, so it
   * never clashes with a standalone emulator on the documented port.
   */
  embeddedEmulator: EmulatorOptions | undefined;
  /** For `DefaultAzureCredential` with ACS_ENDPOINT (an authority host outside Microsoft's). */
  entraCredentialOptions: EntraCredentialOptions;
  /** OTLP trace export from the standard `OTEL_*` variables; `undefined`: no tracing. */
  tracing: TracingSettings | undefined;
  /**
   * ACSGW_TEST_EXIT_AFTER_STEP=reserved|recorded: the process exits right after that provisioning
   * step, as a crash would. For the crash tests only; ignored in production.
   */
  testExitAfterStep: "reserved" | "recorded" | undefined;
  /**
   * ACS_ENDPOINT: authenticate to ACS with Entra ID (`DefaultAzureCredential`: managed identity,
   * workload identity, or `AZURE_*` service principal settings) instead of an access key.
   */
  acsEntraEndpoint: string | undefined;
  acsAllowInsecure: boolean;
  redis:
    | { mode: "memory" }
    | { mode: "single"; url: string }
    | { mode: "cluster"; nodes: { host: string; port: number }[] };
  redisKeyPrefix: string;
  /**
   * PostgreSQL holding the self-service mappings (caller -> ACS identity), or `undefined` to keep
   * them in Redis (or memory without Redis), where a Redis that restarts empty or evicts keys
   * gives callers a second identity.
   */
  databaseUrl: string | undefined;
  /** 32 bytes, or `undefined` to derive it from the ACS access key (HKDF). */
  tokenCacheEncryptionKey: Buffer | undefined;
  tokenMinRemainingMinutes: number;
  /** Entry bound of the in-process cache (and the self-service mapping store when in memory). */
  memoryCacheMaxEntries: number;
  auth: { mode: "none" } | { mode: "jwt"; jwksUrl: string; issuer: string; audience: string };
  adminRole: string;
  routerSecret: string | undefined;
  /** Socket-level bounds: a slow or idle client cannot hold a connection for long. */
  http: {
    /** Whole request (headers and body) must arrive within this. */
    requestTimeoutMs: number;
    headersTimeoutMs: number;
    /** An idle keep-alive connection is closed after this. */
    keepAliveTimeoutMs: number;
    /** Open connections at most; more are refused at accept. */
    maxConnections: number;
  };
  limits: {
    maxDepth: number;
    maxAliases: number;
    maxRootFields: number;
    bodyLimitBytes: number;
    /** ACS calls made for one end user per window (cache hits are free). */
    acsCallsPerWindow: number;
    /** The same for admins; 0: unlimited. */
    adminAcsCallsPerWindow: number;
    rateLimitWindowSeconds: number;
  };
  /** Browser origins allowed to call `/graphql` (`CORS_ORIGINS`). */
  cors: CorsPolicy;
  /** `PERSISTED_DOCUMENTS_ONLY`: execute only the trusted-documents manifest's operations. */
  persistedDocumentsOnly: boolean;
  /**
   * After SIGTERM, keep serving this long before the listener closes, so load balancers that poll
   * (or propagate endpoint removals) stop sending new requests first. 0 in development.
   */
  shutdownDrainDelayMs: number;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

const unset = (value: unknown) => (value === "" ? undefined : value);
const optionalString = z.preprocess(unset, z.string().optional());
const bool = (fallback: boolean) =>
  z.preprocess(
    unset,
    z
      .enum(["true", "false", "1", "0"], { message: "must be true or false" })
      .optional()
      .transform((v) => (v === undefined ? fallback : v === "true" || v === "1")),
  );
const int = (fallback: number, min: number, max: number) =>
  z.preprocess(
    unset,
    z.coerce
      .number({ error: "must be a whole number" })
      .int({ error: "must be a whole number" })
      .min(min, { error: `must be from ${min} to ${max}` })
      .max(max, { error: `must be from ${min} to ${max}` })
      .default(fallback),
  );

const schema = z.object({
  // Exact values only: a typo such as "prod" or "Production" must not quietly start a development
  // gateway (embedded emulator, every caller an admin) where production was meant.
  NODE_ENV: z.preprocess(
    unset,
    z
      .enum(["development", "production", "test"], {
        error: "must be development, production or test (exactly, in lower case)",
      })
      .default("development"),
  ),
  // Unset: loopback in development and test (a development gateway lets every caller mint tokens as
  // an admin, so it must not be reachable from the network by accident), every interface in
  // production (where callers must present a verified JWT). Containers set HOST themselves.
  HOST: optionalString,
  PORT: int(4000, 0, 65535),
  LOG_LEVEL: z.preprocess(
    unset,
    z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  ),
  COMMUNICATION_SERVICES_CONNECTION_STRING: optionalString,
  ACS_ENDPOINT: optionalString,
  ACS_ALLOW_INSECURE: bool(false),
  REDIS_URL: optionalString,
  REDIS_CLUSTER_NODES: optionalString,
  REDIS_KEY_PREFIX: z.preprocess(
    unset,
    z
      .string()
      .max(64)
      .regex(/^[\w.:-]*$/, "may hold letters, digits and . : _ - only")
      .default("acsgw:"),
  ),
  TOKEN_CACHE_ENCRYPTION_KEY: optionalString,
  DATABASE_URL: optionalString,
  TOKEN_MIN_REMAINING_MINUTES: z.preprocess(
    unset,
    z.coerce
      .number({ message: "must be a number" })
      .gt(10, "must be above 10 (the ACS SDKs refresh 10 minutes before expiry)")
      .lt(1440, "must be below 1440 (the longest token lifetime)")
      .default(15),
  ),
  MEMORY_CACHE_MAX_ENTRIES: int(10_000, 1, 10_000_000),
  AUTH_MODE: z.preprocess(unset, z.enum(["none", "jwt"]).default("none")),
  AUTH_JWKS_URL: optionalString,
  AUTH_ISSUER: optionalString,
  AUTH_AUDIENCE: optionalString,
  AUTH_ADMIN_ROLE: z.preprocess(unset, z.string().default("acs.admin")),
  ROUTER_SECRET: optionalString,
  MAX_QUERY_DEPTH: int(8, 1, 100),
  MAX_ALIASES: int(10, 0, 1000),
  MAX_ROOT_FIELDS: int(5, 1, 1000),
  MAX_BODY_BYTES: int(32 * 1024, 1024, 10 * 1024 * 1024),
  HTTP_REQUEST_TIMEOUT_MS: int(10_000, 100, 600_000),
  HTTP_HEADERS_TIMEOUT_MS: int(5_000, 100, 600_000),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: int(5_000, 100, 600_000),
  HTTP_MAX_CONNECTIONS: int(1024, 1, 1_000_000),
  RATE_LIMIT_ACS_CALLS_PER_MINUTE: int(30, 1, 1_000_000),
  RATE_LIMIT_ADMIN_ACS_CALLS_PER_MINUTE: int(0, 0, 1_000_000),
  RATE_LIMIT_TOKENS_PER_MINUTE: z.preprocess(
    unset,
    z
      .undefined({
        error:
          "renamed: the limit now counts ACS calls, not requests (cache hits are free); use RATE_LIMIT_ACS_CALLS_PER_MINUTE (end users) and RATE_LIMIT_ADMIN_ACS_CALLS_PER_MINUTE (admins)",
      })
      .optional(),
  ),
  CORS_ORIGINS: optionalString,
  PERSISTED_DOCUMENTS_ONLY: bool(false),
  SHUTDOWN_DRAIN_DELAY_MS: int(0, 0, 120_000),
});

type Env = Record<string, string | undefined>;

const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK.has(hostname) || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/**
 * `endpoint=https://x.communication.azure.com/;accesskey=BASE64` (keys case-insensitive, the form
 * the Azure portal shows). Returns a problem string instead of throwing.
 */
export function parseConnectionString(value: string): AcsConnection | string {
  const parts = new Map<string, string>();
  for (const segment of value.split(";")) {
    const at = segment.indexOf("=");
    if (at > 0) {
      parts.set(segment.slice(0, at).trim().toLowerCase(), segment.slice(at + 1).trim());
    }
  }
  const endpoint = parts.get("endpoint");
  const accessKey = parts.get("accesskey");
  if (!endpoint || !accessKey) {
    return "must have the form endpoint=https://...;accesskey=...";
  }
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return "its endpoint is not a URL";
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return "its endpoint must be an https:// URL";
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(accessKey) || Buffer.from(accessKey, "base64").length < 16) {
    return "its accesskey must be base64 (as the Azure portal shows it)";
  }
  return { endpoint: url.toString(), accessKey };
}

type Settings = z.infer<typeof schema>;

/**
 * Each setting is parsed on its own, so one bad value (say `PORT=abc`) never hides the problems of
 * the others: the cross-setting checks below still run on every setting that did parse.
 */
function parseSettings(env: Env, problems: string[]): Partial<Settings> {
  const settings: Record<string, unknown> = {};
  for (const [name, field] of Object.entries(schema.shape)) {
    const result = (field as z.ZodType).safeParse(env[name]);
    if (result.success) {
      settings[name] = result.data;
    } else {
      for (const issue of result.error.issues) {
        problems.push(`${name}: ${issue.message}`);
      }
    }
  }
  return settings as Partial<Settings>;
}

export function loadConfig(env: Env = process.env): Readonly<Config> {
  const problems: string[] = [];
  const e = parseSettings(env, problems);
  const production = e.NODE_ENV === "production";

  let acs: AcsConnection | undefined;
  if (e.COMMUNICATION_SERVICES_CONNECTION_STRING !== undefined) {
    const result = parseConnectionString(e.COMMUNICATION_SERVICES_CONNECTION_STRING);
    if (typeof result === "string") {
      // Never echo the value: it holds the access key.
      problems.push(`COMMUNICATION_SERVICES_CONNECTION_STRING: ${result}`);
    } else {
      const url = new URL(result.endpoint);
      if (url.protocol === "http:" && !isLoopbackHost(url.hostname) && !e.ACS_ALLOW_INSECURE) {
        problems.push(
          "COMMUNICATION_SERVICES_CONNECTION_STRING: an http:// endpoint off loopback sends signed requests in clear text; use https:// or set ACS_ALLOW_INSECURE=true",
        );
      }
      acs = result;
    }
  } else if (production && e.ACS_ENDPOINT === undefined) {
    problems.push(
      "COMMUNICATION_SERVICES_CONNECTION_STRING: required when NODE_ENV=production, or ACS_ENDPOINT for Entra ID (the bundled emulator is for development)",
    );
  }

  let acsEntraEndpoint: string | undefined;
  if (e.ACS_ENDPOINT !== undefined) {
    if (e.COMMUNICATION_SERVICES_CONNECTION_STRING !== undefined) {
      problems.push(
        "ACS_ENDPOINT: set it (Entra ID) or COMMUNICATION_SERVICES_CONNECTION_STRING (access key), not both",
      );
    }
    let url: URL | undefined;
    try {
      url = new URL(e.ACS_ENDPOINT);
    } catch {
      problems.push("ACS_ENDPOINT: not a URL");
    }
    if (url && url.protocol !== "https:") {
      // The Azure SDK sends bearer tokens only over TLS, as ACS requires.
      problems.push("ACS_ENDPOINT: must be https:// (Entra ID tokens are sent only over TLS)");
    } else if (url) {
      acsEntraEndpoint = url.toString();
    }
    if (e.REDIS_URL !== undefined || e.REDIS_CLUSTER_NODES !== undefined) {
      if (e.TOKEN_CACHE_ENCRYPTION_KEY === undefined) {
        problems.push(
          "TOKEN_CACHE_ENCRYPTION_KEY: required with ACS_ENDPOINT and Redis (without an access key there is nothing to derive it from)",
        );
      }
    }
  }

  let redis: Config["redis"] = { mode: "memory" };
  if (e.REDIS_URL !== undefined && e.REDIS_CLUSTER_NODES !== undefined) {
    problems.push("REDIS_URL and REDIS_CLUSTER_NODES: set one, not both");
  } else if (e.REDIS_URL !== undefined) {
    try {
      const url = new URL(e.REDIS_URL);
      if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
        problems.push("REDIS_URL: must start with redis:// or rediss://");
      }
      redis = { mode: "single", url: e.REDIS_URL };
    } catch {
      problems.push("REDIS_URL: not a URL");
    }
  } else if (e.REDIS_CLUSTER_NODES !== undefined) {
    const nodes: { host: string; port: number }[] = [];
    for (const item of e.REDIS_CLUSTER_NODES.split(",").map((s) => s.trim())) {
      const match = /^(.+):(\d{1,5})$/.exec(item);
      const port = match ? Number(match[2]) : NaN;
      if (!match || port < 1 || port > 65535) {
        problems.push(`REDIS_CLUSTER_NODES: "${item}" is not host:port`);
      } else {
        nodes.push({ host: match[1]!, port });
      }
    }
    redis = { mode: "cluster", nodes };
  }

  let databaseUrl: string | undefined;
  if (e.DATABASE_URL !== undefined) {
    try {
      const url = new URL(e.DATABASE_URL);
      if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
        problems.push("DATABASE_URL: must start with postgres:// or postgresql://");
      } else {
        databaseUrl = e.DATABASE_URL;
      }
    } catch {
      // Never echo the value: it may hold a password.
      problems.push("DATABASE_URL: not a URL");
    }
  }

  let tokenCacheEncryptionKey: Buffer | undefined;
  if (e.TOKEN_CACHE_ENCRYPTION_KEY !== undefined) {
    const key = Buffer.from(e.TOKEN_CACHE_ENCRYPTION_KEY, "base64");
    if (key.length !== 32 || !/^[A-Za-z0-9+/]+={0,2}$/.test(e.TOKEN_CACHE_ENCRYPTION_KEY)) {
      problems.push("TOKEN_CACHE_ENCRYPTION_KEY: must be base64 of exactly 32 bytes");
    } else {
      tokenCacheEncryptionKey = key;
    }
  }

  let auth: Config["auth"] = { mode: "none" };
  if (e.AUTH_MODE === "jwt") {
    const missing = (["AUTH_JWKS_URL", "AUTH_ISSUER", "AUTH_AUDIENCE"] as const).filter(
      (name) => e[name] === undefined,
    );
    for (const name of missing) {
      problems.push(`${name}: required when AUTH_MODE=jwt`);
    }
    if (e.AUTH_JWKS_URL !== undefined) {
      try {
        const url = new URL(e.AUTH_JWKS_URL);
        if (
          url.protocol !== "https:" &&
          !(url.protocol === "http:" && isLoopbackHost(url.hostname))
        ) {
          problems.push("AUTH_JWKS_URL: must be https:// (http:// only on loopback)");
        }
      } catch {
        problems.push("AUTH_JWKS_URL: not a URL");
      }
    }
    if (missing.length === 0) {
      auth = {
        mode: "jwt",
        jwksUrl: e.AUTH_JWKS_URL!,
        issuer: e.AUTH_ISSUER!,
        audience: e.AUTH_AUDIENCE!,
      };
    }
  } else if (production) {
    problems.push(
      "AUTH_MODE: none makes every caller an admin; it is refused when NODE_ENV=production (use jwt)",
    );
  }
  if (
    e.HTTP_HEADERS_TIMEOUT_MS !== undefined &&
    e.HTTP_REQUEST_TIMEOUT_MS !== undefined &&
    e.HTTP_HEADERS_TIMEOUT_MS > e.HTTP_REQUEST_TIMEOUT_MS
  ) {
    problems.push("HTTP_HEADERS_TIMEOUT_MS: must not exceed HTTP_REQUEST_TIMEOUT_MS");
  }
  if (e.ROUTER_SECRET !== undefined && e.ROUTER_SECRET.length < 16) {
    problems.push("ROUTER_SECRET: must be at least 16 characters");
  }

  const cors = parseCorsOrigins(e.CORS_ORIGINS, production);
  if (typeof cors === "string") {
    problems.push(`CORS_ORIGINS: ${cors}`);
  }

  // Decided once: the emulator's settings matter (and are checked) only when it runs.
  let embeddedEmulator: EmulatorOptions | undefined;
  if (
    e.COMMUNICATION_SERVICES_CONNECTION_STRING === undefined &&
    e.ACS_ENDPOINT === undefined &&
    !production
  ) {
    try {
      const { tls: _tls, entra: _entra, ...options } = emulatorOptionsFromEnv(env);
      embeddedEmulator = { ...options, ...(options.port === undefined ? { port: 0 } : {}) };
    } catch (error) {
      problems.push(error instanceof Error ? error.message : String(error));
    }
  }

  let tracing: TracingSettings | undefined;
  try {
    tracing = tracingSettingsFromEnv(env);
  } catch (error) {
    if (!(error instanceof TracingConfigError)) {
      throw error;
    }
    problems.push(error.message);
  }

  let testExitAfterStep: Config["testExitAfterStep"];
  const exitStep = env.ACSGW_TEST_EXIT_AFTER_STEP?.trim();
  if (exitStep && !production) {
    if (exitStep === "reserved" || exitStep === "recorded") {
      testExitAfterStep = exitStep;
    } else {
      problems.push("ACSGW_TEST_EXIT_AFTER_STEP: must be reserved or recorded");
    }
  }

  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
  return freezeConfig(e as Settings, {
    databaseUrl,
    cors: cors as CorsPolicy,
    acs,
    acsEntraEndpoint,
    redis,
    tokenCacheEncryptionKey,
    auth,
    embeddedEmulator,
    entraCredentialOptions: entraCredentialOptions(env),
    tracing,
    testExitAfterStep,
  });
}

function freezeConfig(
  e: Settings,
  derived: Pick<
    Config,
    | "databaseUrl"
    | "cors"
    | "acs"
    | "acsEntraEndpoint"
    | "redis"
    | "tokenCacheEncryptionKey"
    | "auth"
    | "embeddedEmulator"
    | "entraCredentialOptions"
    | "tracing"
    | "testExitAfterStep"
  >,
): Readonly<Config> {
  const { databaseUrl, cors, acs, acsEntraEndpoint, redis, tokenCacheEncryptionKey, auth } =
    derived;
  const production = e.NODE_ENV === "production";
  return Object.freeze({
    nodeEnv: e.NODE_ENV,
    production,
    host: e.HOST ?? (production ? "0.0.0.0" : "127.0.0.1"),
    port: e.PORT,
    logLevel: e.LOG_LEVEL,
    acs,
    acsEntraEndpoint,
    embeddedEmulator: derived.embeddedEmulator,
    entraCredentialOptions: derived.entraCredentialOptions,
    tracing: derived.tracing,
    testExitAfterStep: derived.testExitAfterStep,
    acsAllowInsecure: e.ACS_ALLOW_INSECURE,
    redis,
    redisKeyPrefix: e.REDIS_KEY_PREFIX,
    databaseUrl,
    tokenCacheEncryptionKey,
    tokenMinRemainingMinutes: e.TOKEN_MIN_REMAINING_MINUTES,
    memoryCacheMaxEntries: e.MEMORY_CACHE_MAX_ENTRIES,
    auth,
    adminRole: e.AUTH_ADMIN_ROLE,
    routerSecret: e.ROUTER_SECRET,
    http: {
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_MS,
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
      keepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      maxConnections: e.HTTP_MAX_CONNECTIONS,
    },
    limits: {
      maxDepth: e.MAX_QUERY_DEPTH,
      maxAliases: e.MAX_ALIASES,
      maxRootFields: e.MAX_ROOT_FIELDS,
      bodyLimitBytes: e.MAX_BODY_BYTES,
      acsCallsPerWindow: e.RATE_LIMIT_ACS_CALLS_PER_MINUTE,
      adminAcsCallsPerWindow: e.RATE_LIMIT_ADMIN_ACS_CALLS_PER_MINUTE,
      rateLimitWindowSeconds: 60,
    },
    cors,
    persistedDocumentsOnly: e.PERSISTED_DOCUMENTS_ONLY,
    shutdownDrainDelayMs: e.SHUTDOWN_DRAIN_DELAY_MS,
  });
}
