import type { EmulatorOptions } from "@acs-identity-gateway/emulator";
import { z } from "zod";
import { auth, callers } from "./config/auth.js";
import { browsers } from "./config/browsers.js";
import { database, redis, tokenCache } from "./config/cache.js";
import { decide } from "./config/decisions.js";
import { directory } from "./config/directory.js";
import { deepFreeze } from "./config/freeze.js";
import { limits } from "./config/limits.js";
import { environment, http, listening, shutdown, testHooks } from "./config/server.js";
import { telemetry } from "./config/telemetry.js";
import { embeddedEmulator, entraAuthority, upstream } from "./config/upstream.js";
import type { EntraCredentialOptions } from "./identity/entra-credential.js";
import type { CorsPolicy } from "./server/cors-policy.js";
import type { TracingSettings } from "./telemetry/tracing.js";

export { parseConnectionString } from "./config/connection-string.js";
export { isLoopbackHost } from "./config/url.js";

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
 *
 * How: `decide` (src/config/decisions.ts) makes the choices several concerns depend on
 * (production or not, where tokens come from, where Redis is) from which settings are set. Each
 * concern (src/config/*.ts) is then one zod schema for those choices, declaring its settings and
 * the rules between them (a union branch per choice, `AUTH_MODE`'s discriminated union, a
 * `superRefine`), and yields its slice of the Config. Each concern is parsed on its own, so a bad
 * value in one never hides the problems of another.
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
  /** The identity directory (src/directory/, docs/directory.md). */
  directory: {
    /**
     * The embedded PGlite's folder when there is no DATABASE_URL, or `memory` (lost at exit).
     * `undefined` (only for settings passed to `loadConfig`, never the process's own): no
     * directory without DATABASE_URL. Unused with DATABASE_URL (it shares that PostgreSQL).
     */
    dataDir: string | undefined;
    /** `WEBHOOK_URLS` and `WEBHOOK_SECRET`: lifecycle events delivered there, signed; or none. */
    webhooks: { urls: string[]; secret: string } | undefined;
    /** `AUTH_EXTERNAL_ID_CLAIM`: the token claim whose value is a caller's external id. */
    externalIdClaim: string;
    /** `ACS_CUSTOM_ID`: send the external id to ACS as `customId` (api-version 2025-03-02-preview). */
    customId: boolean;
  };
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

/** One variable as the concerns receive it: an empty value counts as unset. */
const setting = z
  .string()
  .optional()
  .transform((value) => (value === "" ? undefined : value));

/**
 * The gateway's own settings: the concerns receive these and nothing else, so this is the list of
 * what it reads (test/ops/settings.ts compares it with docs/configuration.md). Variables other
 * modules own (`ACS_EMULATOR_*`, `OTEL_*`, `AZURE_AUTHORITY_HOST`, the crash tests' hook) reach
 * only the concern that hands them to their owner.
 */
const schema = z.object({
  // Environment and listening
  NODE_ENV: setting,
  HOST: setting,
  PORT: setting,
  LOG_LEVEL: setting,
  // ACS
  COMMUNICATION_SERVICES_CONNECTION_STRING: setting,
  ACS_ENDPOINT: setting,
  ACS_ALLOW_INSECURE: setting,
  // Token cache and Redis
  REDIS_URL: setting,
  REDIS_CLUSTER_NODES: setting,
  REDIS_KEY_PREFIX: setting,
  TOKEN_CACHE_ENCRYPTION_KEY: setting,
  TOKEN_MIN_REMAINING_MINUTES: setting,
  MEMORY_CACHE_MAX_ENTRIES: setting,
  // Self-service mappings
  DATABASE_URL: setting,
  // Callers
  AUTH_MODE: setting,
  AUTH_JWKS_URL: setting,
  AUTH_ISSUER: setting,
  AUTH_AUDIENCE: setting,
  AUTH_ADMIN_ROLE: setting,
  ROUTER_SECRET: setting,
  // Limits
  MAX_QUERY_DEPTH: setting,
  MAX_ALIASES: setting,
  MAX_ROOT_FIELDS: setting,
  MAX_BODY_BYTES: setting,
  RATE_LIMIT_ACS_CALLS_PER_MINUTE: setting,
  RATE_LIMIT_ADMIN_ACS_CALLS_PER_MINUTE: setting,
  RATE_LIMIT_TOKENS_PER_MINUTE: setting,
  // HTTP and browsers
  HTTP_REQUEST_TIMEOUT_MS: setting,
  HTTP_HEADERS_TIMEOUT_MS: setting,
  HTTP_KEEP_ALIVE_TIMEOUT_MS: setting,
  HTTP_MAX_CONNECTIONS: setting,
  CORS_ORIGINS: setting,
  PERSISTED_DOCUMENTS_ONLY: setting,
  // Shutdown
  SHUTDOWN_DRAIN_DELAY_MS: setting,
  // Identity directory and its webhooks
  DIRECTORY_DATA_DIR: setting,
  WEBHOOK_URLS: setting,
  WEBHOOK_SECRET: setting,
  AUTH_EXTERNAL_ID_CLAIM: setting,
  ACS_CUSTOM_ID: setting,
});

/** A name in that list: what a concern may declare (`settings` in src/config/fields.ts). */
export type SettingName = keyof typeof schema.shape;

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = process.env): Readonly<Config> {
  const settings = schema.parse(env);
  const decisions = decide(settings);
  const problems: string[] = [];
  // Every concern runs even after one failed, so one start lists every problem. A failed concern
  // adds its problems and no slice; the object it leaves incomplete is never returned.
  const parse = <S extends z.ZodType>(concern: S, input: unknown): z.output<S> => {
    const result = concern.safeParse(input);
    if (result.success) {
      return result.data;
    }
    for (const issue of result.error.issues) {
      // A problem of one setting is named after it; one that names its settings itself (the
      // emulator's, the tracing module's) has no path.
      problems.push(
        issue.path.length > 0 ? `${String(issue.path[0])}: ${issue.message}` : issue.message,
      );
    }
    return {} as z.output<S>;
  };
  const config = {
    ...parse(environment(decisions), settings),
    ...parse(listening(decisions), settings),
    ...parse(upstream(decisions), settings),
    ...parse(embeddedEmulator(decisions), env),
    ...parse(entraAuthority, env),
    ...parse(redis(decisions), settings),
    ...parse(tokenCache(decisions), settings),
    ...parse(database, settings),
    ...parse(auth(decisions), settings),
    ...parse(callers, settings),
    ...parse(limits, settings),
    ...parse(http, settings),
    ...parse(browsers(decisions), settings),
    ...parse(shutdown, settings),
    // The directory's folder defaults to .data/directory only for the process's own environment
    // (npm start, the image); an env object passed in (tests, embeddings) keeps it in memory.
    ...parse(directory(env === process.env), settings),
    ...parse(telemetry, env),
    ...parse(testHooks(decisions), env),
  } satisfies Config;
  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
  return deepFreeze(config);
}
