import "reflect-metadata";
import { createHash } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { ANONYMOUS_ADMIN, type Caller } from "./auth/caller.js";
import { createJwtVerifier } from "./auth/jwt-verifier.js";
import { createRateLimiter } from "./auth/rate-limiter.js";
import { routerSecretMatches } from "./auth/router-secret.js";
import { createRedisClient, type RedisClient } from "./cache/redis-client.js";
import { createTokenCache } from "./cache/index.js";
import type { TokenCache } from "./cache/token-cache.js";
import type { AcsConnection, Config } from "./config.js";
import { startEmulator, type Emulator, type EmulatorOptions } from "./emulator/index.js";
import { GatewayError } from "./errors.js";
import type { GatewayContext } from "./graphql/context.js";
import { contextError } from "./graphql/errors.js";
import { buildGatewaySchema } from "./graphql/schema.js";
import { createAcsIdentityProvider } from "./identity/acs-identity-provider.js";
import type { IdentityProvider } from "./identity/identity-provider.js";
import {
  createMemoryUserMappingStore,
  createRedisUserMappingStore,
  type UserMappingStore,
} from "./identity/user-mapping-store.js";
import { createLogger, quieter, type Logger } from "./logger.js";
import { createHttpServer, type HttpServer, type ReadinessReport } from "./server/http-server.js";
import { createMetrics, type Metrics } from "./server/metrics.js";
import { traceRedis, traceTokenCache } from "./telemetry/instrument.js";
import { createTokenService, type TokenService } from "./tokens/token-service.js";

export interface AppDeps {
  logger?: Logger;
  /** Options for the embedded emulator, used only when `config.acs` is unset. Port 0 by default. */
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
  /** The ACS endpoint in use (the emulator's when embedded). */
  acs: AcsConnection;
  /** Listens on `config.host:config.port` (or the given port); resolves to the GraphQL URL. */
  listen(port?: number): Promise<string>;
  readiness(): Promise<ReadinessReport>;
  /** Stops accepting requests, drains in-flight ones, closes Redis and the emulator. */
  close(): Promise<void>;
}

/**
 * Wires the layers (ARCHITECTURE.md): no listening and no process-wide side effects, so tests
 * create as many gateways in one process as they need (e.g. two instances on one Redis).
 */
export async function createApp(config: Readonly<Config>, deps: AppDeps = {}): Promise<App> {
  const logger = deps.logger ?? createLogger({ level: config.logLevel });
  const metrics = deps.metrics ?? createMetrics();
  const closers: (() => Promise<unknown>)[] = [];

  try {
    let emulator: Emulator | undefined;
    let acs = config.acs;
    if (!acs) {
      emulator = await startEmulator({
        host: "127.0.0.1",
        port: 0,
        ...deps.emulator,
        // Its "listening" line would repeat what the gateway's start-up line says.
        logger: logger.child({ component: "emulator" }, { level: quieter(logger.level, "warn") }),
      });
      closers.push(() => emulator!.close());
      acs = { endpoint: emulator.endpoint, accessKey: emulator.accessKey };
    }
    const acsUrl = new URL(acs.endpoint);

    const identity =
      deps.identity ??
      createAcsIdentityProvider({
        endpoint: acs.endpoint,
        accessKey: acs.accessKey,
        allowInsecureConnection: acsUrl.protocol === "http:",
        metrics,
        logger: logger.child({ component: "acs" }),
      });

    const redis =
      config.redis.mode === "memory"
        ? undefined
        : traceRedis(createRedisClient(config.redis, logger.child({ component: "redis" })));
    if (redis) {
      closers.push(async () => redis.disconnect());
      // Without an offline queue, commands sent before the connection is up fail at once: give
      // Redis a moment before serving. If it stays down, start anyway; the cache degrades and
      // the mapping store answers UPSTREAM_UNAVAILABLE until it is back.
      if (!(await waitUntilReady(redis, 5000))) {
        logger.warn("Redis is not reachable yet; starting without it");
      }
    }

    const cache = traceTokenCache(
      createTokenCache(config, {
        logger: logger.child({ component: "cache" }),
        acs,
        redisClient: redis,
        onLookup: (result) => metrics.cacheRequests.inc({ result }),
      }),
    );
    closers.unshift(() => cache.close());

    const mappings: UserMappingStore = redis
      ? createRedisUserMappingStore({
          redis,
          // Per ACS resource (its endpoint, not its key: a key rotation keeps the identities), so
          // repointing a deployment at another resource never maps a caller to a foreign identity.
          keyPrefix: `${config.redisKeyPrefix}map:${createHash("sha256").update(acsUrl.host).digest("hex").slice(0, 12)}:`,
        })
      : createMemoryUserMappingStore();
    closers.unshift(() => mappings.close());

    const rateLimiter = createRateLimiter({
      limit: config.limits.rateLimitPerWindow,
      windowSeconds: config.limits.rateLimitWindowSeconds,
      redis,
      keyPrefix: `${config.redisKeyPrefix}rl:`,
      logger: logger.child({ component: "rate-limit" }),
    });
    closers.unshift(() => rateLimiter.close());

    const tokens = createTokenService({ identity, cache, mappings, logger });

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

    async function authenticate(headers: IncomingHttpHeaders): Promise<Caller> {
      if (config.routerSecret !== undefined) {
        const presented = headers["router-authorization"];
        if (typeof presented !== "string" || !routerSecretMatches(presented, config.routerSecret)) {
          throw contextError(
            "UNAUTHENTICATED",
            "This subgraph accepts requests only from its router.",
            401,
          );
        }
      }
      if (!verifier) {
        return ANONYMOUS_ADMIN;
      }
      try {
        return await verifier.verify(headers.authorization);
      } catch (error) {
        const message = error instanceof Error ? error.message : "invalid credentials";
        throw contextError("UNAUTHENTICATED", message, 401);
      }
    }

    async function createContext(headers: IncomingHttpHeaders): Promise<GatewayContext> {
      const caller = await authenticate(headers);
      return {
        caller,
        tokens,
        logger,
        async consumeMintBudget() {
          const verdict = await rateLimiter.consume(caller.key);
          if (!verdict.allowed) {
            metrics.rateLimited.inc();
            throw new GatewayError("RATE_LIMITED", "Too many token requests. Try again later.", {
              retryAfterSeconds: verdict.retryAfterSeconds,
            });
          }
        },
      };
    }

    async function readiness(): Promise<ReadinessReport> {
      const [upstream, cacheReady] = await Promise.all([
        probe(acsUrl),
        cache.isReady().catch(() => false),
      ]);
      return { ready: upstream && cacheReady, checks: { upstream, cache: cacheReady } };
    }

    const schema = await buildGatewaySchema();
    const server = await createHttpServer({
      config,
      schema,
      createContext,
      readiness,
      metrics,
      logger,
    });
    closers.unshift(() => server.fastify.close());

    let closed: Promise<void> | undefined;
    return {
      config,
      server,
      tokens,
      cache,
      metrics,
      emulator,
      acs,
      readiness,
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
        closed ??= closeAll(closers, logger);
        return closed;
      },
    };
  } catch (error) {
    await closeAll(closers, logger);
    throw error;
  }
}

async function closeAll(closers: (() => Promise<unknown>)[], logger: Logger): Promise<void> {
  // In order: HTTP first (drain), then what requests use, then the emulator last.
  for (const close of closers) {
    try {
      await close();
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

/** Any HTTP answer from the ACS endpoint's origin means it is reachable (ACS has no ping call). */
async function probe(endpoint: URL): Promise<boolean> {
  try {
    const response = await fetch(new URL("/", endpoint), {
      method: "HEAD",
      signal: AbortSignal.timeout(2000),
    });
    await response.body?.cancel();
    return true;
  } catch {
    return false;
  }
}
