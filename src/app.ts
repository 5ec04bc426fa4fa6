import "reflect-metadata";
import { Gauge } from "prom-client";
import { createHash } from "node:crypto";
import { createJwtVerifier } from "./auth/jwt-verifier.js";
import { createRateLimiter, type RateLimiter } from "./auth/rate-limiter.js";
import {
  createRedisClient,
  mappingKeyPrefix,
  rateLimitKeyPrefix,
  type RedisClient,
} from "./redis/index.js";
import { createTokenCache } from "./cache/index.js";
import type { TokenCache } from "./cache/token-cache.js";
import type { Config } from "./config.js";
import { startEmulator, type Emulator, type EmulatorOptions } from "@acs-identity-gateway/emulator";
import { buildGatewaySchema } from "./graphql/schema.js";
import type { TokenCredential } from "@azure/identity";
import { createAcsIdentityProvider } from "./identity/acs-identity-provider.js";
import { createEntraCredential } from "./identity/entra-credential.js";
import type { IdentityProvider } from "./identity/identity-provider.js";
import { exitAfterStep } from "./identity/provisioning.js";
import {
  createMemoryUserMappingStore,
  createRedisUserMappingStore,
  type UserMappingStore,
} from "./identity/user-mapping-store.js";
import { createLogger, quieter, type Logger } from "./logger.js";
import { createHttpServer, type HttpServer } from "./server/http-server.js";
import { createMetrics, type Metrics } from "./server/metrics.js";
import { createAuthentication } from "./server/plugins/authentication.js";
import { createCallerContext } from "./server/plugins/caller-context.js";
import { checkAcsCredentials, createReadiness, type ReadinessReport } from "./server/readiness.js";
import { traceRedis, traceTokenCache } from "./telemetry/instrument.js";
import { createTokenService, type TokenService } from "./tokens/token-service.js";
import { createUpstreamBudget } from "./tokens/upstream-budget.js";

export interface AppDeps {
  logger?: Logger;
  /** Options over `config.embeddedEmulator`'s, used only when the gateway embeds the emulator. */
  emulator?: EmulatorOptions;
  /** Replaces the ACS client (tests use this only to inject faults; normal tests use the emulator). */
  identity?: IdentityProvider;
  metrics?: Metrics;
}

export interface App {
  config: Readonly<Config>;
  server: HttpServer;
  tokens: TokenService;
  cache: TokenCache;
  metrics: Metrics;
  /** The embedded emulator, when the gateway started one. */
  emulator: Emulator | undefined;
  /** The ACS endpoint in use (the emulator's when embedded); no access key with Entra ID. */
  acs: { endpoint: string; accessKey: string | undefined };
  /** Listens on `config.host:config.port` (or the given port); resolves to the GraphQL URL. */
  listen(port?: number): Promise<string>;
  readiness(): Promise<ReadinessReport>;
  /** Stops accepting requests, drains in-flight ones, then closes what they used (see `close`). */
  close(): Promise<void>;
}

/** The mapping store's Redis command timeout (its own connection; the cache's is 250 ms). */
const MAPPING_COMMAND_TIMEOUT_MS = 2000;

/** Thrown by `createApp` when ACS refuses the configured credentials: the process must not serve. */
export class AcsCredentialsRejectedError extends Error {
  override readonly name = "AcsCredentialsRejectedError";
  constructor(endpoint: string, entra: boolean) {
    super(
      `ACS at ${new URL(endpoint).host} refused the gateway's credentials (401): ${
        entra
          ? "give the Entra ID identity a role on the ACS resource (e.g. Communication and Email Service Owner)"
          : "check the access key in COMMUNICATION_SERVICES_CONNECTION_STRING"
      }`,
    );
  }
}

/** What `close()` releases, each once, in the order of `SHUTDOWN_ORDER`. */
interface Resources {
  server?: HttpServer;
  limiters: RateLimiter[];
  mappings?: UserMappingStore;
  /** Its background clean-ups stop before the stores they wait for close. */
  tokens?: { close(): void };
  /** PostgreSQL connections of the mapping store (DATABASE_URL). */
  pool?: { end(): Promise<void> };
  cache?: TokenCache;
  redis?: RedisClient;
  mappingRedis?: RedisClient;
  emulator?: Emulator;
}

/**
 * Shutdown order, explicitly: stop taking requests and drain the ones in flight first (they still
 * need everything below), then what requests use, then the Redis connection those share, and the
 * embedded emulator last (the drained requests may have been waiting on it).
 */
const SHUTDOWN_ORDER: ((r: Resources) => Promise<unknown> | undefined)[] = [
  (r) => r.server?.fastify.close(),
  (r) => Promise.all(r.limiters.map((limiter) => limiter.close())),
  (r) => Promise.resolve(r.tokens?.close()),
  (r) => r.mappings?.close(),
  (r) => r.pool?.end(),
  (r) => r.cache?.close(),
  (r) => (r.redis ? Promise.resolve(r.redis.disconnect()) : undefined),
  (r) => (r.mappingRedis ? Promise.resolve(r.mappingRedis.disconnect()) : undefined),
  (r) => r.emulator?.close(),
];

/**
 * Wires the layers (docs/architecture.md), and only wires: request-time behaviour lives in the
 * plugins under server/plugins and in the token service. No listening and no process-wide side
 * effects, so tests create as many gateways in one process as they need.
 */
export async function createApp(config: Readonly<Config>, deps: AppDeps = {}): Promise<App> {
  const logger = deps.logger ?? createLogger({ level: config.logLevel });
  const metrics = deps.metrics ?? createMetrics();
  const resources: Resources = { limiters: [] };

  try {
    let acs: App["acs"] | undefined = config.acs;
    let credential: TokenCredential | undefined;
    if (config.acsEntraEndpoint) {
      credential = await createEntraCredential({
        credentialOptions: config.entraCredentialOptions,
      });
      acs = { endpoint: config.acsEntraEndpoint, accessKey: undefined };
    } else if (!acs) {
      resources.emulator = await startEmulator({
        host: "127.0.0.1",
        port: 0,
        ...config.embeddedEmulator,
        ...deps.emulator,
        // Its "listening" line would repeat what the gateway's start-up line says.
        logger: logger.child({ component: "emulator" }, { level: quieter(logger.level, "warn") }),
      });
      acs = { endpoint: resources.emulator.endpoint, accessKey: resources.emulator.accessKey };
    }
    const acsUrl = new URL(acs.endpoint);

    const redis = (resources.redis =
      config.redis.mode === "memory"
        ? undefined
        : traceRedis(createRedisClient(config.redis, logger.child({ component: "redis" }))));
    if (redis && !(await waitUntilReady(redis, 5000))) {
      // Without an offline queue, commands sent before the connection is up fail at once: give
      // Redis a moment. If it stays down, start anyway; the cache degrades and the mapping store
      // answers UPSTREAM_UNAVAILABLE until it is back.
      logger.warn("Redis is not reachable yet; starting without it");
    }

    const cache = (resources.cache = traceTokenCache(
      createTokenCache(config, {
        logger: logger.child({ component: "cache" }),
        // With Entra ID there is no access key: the cache key is TOKEN_CACHE_ENCRYPTION_KEY (config
        // requires it with Redis), and it also keys the namespace, which follows the endpoint.
        acs: {
          endpoint: acs.endpoint,
          accessKey:
            acs.accessKey ?? config.tokenCacheEncryptionKey?.toString("base64") ?? acs.endpoint,
        },
        redisClient: redis,
        onWait: (scope) => metrics.cacheWaits.inc({ scope }),
        onBreakerOpen: () => metrics.cacheBreakerOpened.inc(),
        onLookup: (result) => metrics.cacheRequests.inc({ result }),
      }),
    ));

    // The cache's state at each scrape: 0 while Redis is unreachable or its breaker is open.
    new Gauge({
      name: "acsgw_token_cache_ready",
      help: "1 when the token cache's store can be used now; 0 while Redis is unreachable or the cache's breaker is open.",
      registers: [metrics.registry],
      async collect() {
        this.set((await cache.isReady().catch(() => false)) ? 1 : 0);
      },
    });

    // Per ACS resource (its endpoint, not its key: a key rotation keeps the identities), so
    // repointing a deployment at another resource never maps a caller to a foreign identity.
    const resource = createHash("sha256").update(acsUrl.host).digest("hex").slice(0, 12);
    // The mapping store is data, not a cache: a slow answer is better than a failed call, so it
    // has a connection of its own with a longer command timeout than the cache's 250 ms (which
    // also counts this process's event-loop lag under load).
    const mappingRedis = (resources.mappingRedis =
      config.redis.mode === "memory"
        ? undefined
        : traceRedis(
            createRedisClient(config.redis, logger.child({ component: "redis-mappings" }), {
              commandTimeoutMs: MAPPING_COMMAND_TIMEOUT_MS,
            }),
          ));
    if (mappingRedis) {
      await waitUntilReady(mappingRedis, 5000);
    }
    const redisMappings = mappingRedis
      ? createRedisUserMappingStore({
          redis: mappingRedis,
          keyPrefix: mappingKeyPrefix(config.redisKeyPrefix, resource),
        })
      : undefined;
    if (config.databaseUrl) {
      // node-postgres and the migrations load only when PostgreSQL is configured.
      const { createMappingPool, createPgUserMappingStore } =
        await import("./identity/pg-user-mapping-store.js");
      const { migrate } = await import("./identity/migrations/index.js");
      const pool = (resources.pool = createMappingPool(config.databaseUrl, (error) =>
        logger.warn({ err: error.message }, "mapping database connection error"),
      ));
      await migrate(pool, logger.child({ component: "mapping-db" }));
      // Callers mapped in Redis before DATABASE_URL was set keep their identity (imported once),
      // as long as Redis can answer: it is only a cache here, so its outage refuses nobody.
      let lastSkipWarning = -Infinity;
      resources.mappings = createPgUserMappingStore({
        pool,
        resource,
        importFrom: redisMappings,
        onImportSkipped: (error) => {
          // One line a minute at most: an outage would otherwise log one per new caller.
          if (performance.now() - lastSkipWarning >= 60_000) {
            lastSkipWarning = performance.now();
            logger.warn(
              { err: error instanceof Error ? error.message : String(error) },
              "Redis could not be asked for mappings stored before DATABASE_URL was set; new callers get their identity from PostgreSQL",
            );
          }
        },
      });
    } else {
      resources.mappings = redisMappings ?? createMemoryUserMappingStore();
    }
    const mappings = resources.mappings;

    const limiter = (limit: number, name: string) => {
      const created = createRateLimiter({
        limit,
        windowSeconds: config.limits.rateLimitWindowSeconds,
        redis,
        keyPrefix: `${rateLimitKeyPrefix(config.redisKeyPrefix)}${name}:`,
        logger: logger.child({ component: "rate-limit" }),
      });
      resources.limiters.push(created);
      return created;
    };
    const budget = createUpstreamBudget({
      endUser: limiter(config.limits.acsCallsPerWindow, "user"),
      admin:
        config.limits.adminAcsCallsPerWindow > 0
          ? limiter(config.limits.adminAcsCallsPerWindow, "admin")
          : undefined,
      onRefused: (caller) => metrics.rateLimited.inc({ caller }),
    });

    const readiness = createReadiness({
      acsEndpoint: acs.endpoint,
      cacheReady: () => cache.isReady(),
    });
    const upstream =
      deps.identity ??
      createAcsIdentityProvider({
        endpoint: acs.endpoint,
        accessKey: acs.accessKey,
        credential,
        allowInsecureConnection: acsUrl.protocol === "http:",
        metrics,
        logger: logger.child({ component: "acs" }),
      });
    if ((await checkAcsCredentials(upstream)) === "rejected") {
      throw new AcsCredentialsRejectedError(acs.endpoint, credential !== undefined);
    }
    const identity = readiness.track(upstream);
    const auditLog = logger.child({ component: "audit" });
    const tokens = (resources.tokens = createTokenService({
      // The audit trail of identity changes: who (issuer and the hashed caller key, never the
      // subject in clear), what, which identity, and whether it was self-service.
      audit: ({ event, userId, actor, via }) => {
        metrics.auditEvents.inc({ event });
        auditLog.info(
          { audit: event, userId, via, actor: { iss: actor.issuer ?? "none", key: actor.key } },
          `audit: ${event}`,
        );
      },
      identity,
      budget,
      cache,
      mappings,
      logger,
      provisioning: { afterStep: exitAfterStep(config.testExitAfterStep) },
    }));
    // Identities a crash left recorded but unconfirmed: confirm them now rather than on the
    // caller's next call. A store that is down does not stop the start (each call retries).
    await tokens.recoverPendingIdentities().catch((error: unknown) => {
      logger.warn(
        { err: error instanceof Error ? error.message : String(error) },
        "could not look for pending identities at start",
      );
    });

    const verifier =
      config.auth.mode === "jwt"
        ? createJwtVerifier({
            jwksUrl: config.auth.jwksUrl,
            issuer: config.auth.issuer,
            audience: config.auth.audience,
            adminRole: config.adminRole,
          })
        : undefined;
    if (!verifier) {
      logger.warn(
        "AUTH_MODE=none: every caller is the admin 'anonymous'. For development only; set AUTH_MODE=jwt before exposing the gateway.",
      );
    }

    const server = (resources.server = await createHttpServer({
      config,
      schema: await buildGatewaySchema(),
      createContext: createCallerContext({
        authenticate: createAuthentication({
          verifier,
          routerSecret: config.routerSecret,
          production: config.production,
        }),
        tokens,
        acsEndpoint: acs.endpoint,
        logger,
        metrics,
      }),
      readiness,
      metrics,
      logger,
      redis,
    }));

    let closed: Promise<void> | undefined;
    return {
      config,
      server,
      tokens,
      cache,
      metrics,
      emulator: resources.emulator,
      acs,
      readiness: () => readiness.report(),
      async listen(port = config.port) {
        await server.fastify.listen({ host: config.host, port });
        const address = server.fastify.server.address();
        const bound = typeof address === "object" && address ? address.port : port;
        // Listening on every interface: localhost is the address a developer can open.
        const wildcard = config.host === "0.0.0.0" || config.host === "::";
        const host = wildcard
          ? "localhost"
          : config.host.includes(":")
            ? `[${config.host}]`
            : config.host;
        return `http://${host}:${bound}/graphql`;
      },
      close() {
        closed ??= release(resources, logger);
        return closed;
      },
    };
  } catch (error) {
    await release(resources, logger);
    throw error;
  }
}

async function release(resources: Resources, logger: Logger): Promise<void> {
  for (const step of SHUTDOWN_ORDER) {
    try {
      await step(resources);
    } catch (error) {
      logger.warn(
        { err: error instanceof Error ? error.message : String(error) },
        "error while closing",
      );
    }
  }
}

function waitUntilReady(redis: RedisClient, timeoutMs: number): Promise<boolean> {
  if (redis.status === "ready") {
    return Promise.resolve(true);
  }
  return new Promise((resolve) => {
    const done = (ready: boolean) => {
      clearTimeout(timer);
      redis.off("ready", onReady);
      resolve(ready);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    redis.on("ready", onReady);
  });
}
