import "reflect-metadata";
import type { Emulator, EmulatorOptions } from "@acs-identity-gateway/emulator";
import { createAcsBudget } from "./app/acs-budget.js";
import { refuseRejectedCredentials } from "./app/acs-credentials.js";
import { createAcsClient, openAcsResource } from "./app/acs-resource.js";
import { createBearerVerifier } from "./app/bearer-verifier.js";
import {
  openGatewayDatabase,
  openGatewayDirectory,
  type OpenedDirectory,
} from "./app/directory.js";
import { registerCacheReadyGauge } from "./app/cache-ready-gauge.js";
import { createGatewayServices } from "./app/gateway-services.js";
import { graphqlUrl } from "./app/graphql-url.js";
import { openMappingStore } from "./app/mapping-store.js";
import { connectMappingRedis, connectSharedRedis } from "./app/redis-connections.js";
import { releaseResources, type Resources } from "./app/shutdown.js";
import { tokenCacheKeying } from "./app/token-cache-keying.js";
import { createTokenCache } from "./cache/index.js";
import type { TokenCache } from "./cache/token-cache.js";
import type { Config } from "./config.js";
import type { GatewayServices } from "./graphql/context.js";
import { buildGatewaySchema } from "./graphql/schema.js";
import {
  createDirectoryRecords,
  noDirectory,
  type DirectoryRecords,
} from "./identity/directory-records.js";
import type { IdentityProvider } from "./identity/identity-provider.js";
import { exitAfterStep, recoverPendingIdentities } from "./identity/provisioning.js";
import { createLogger, type Logger } from "./logger.js";
import { createHttpServer, type HttpServer } from "./server/http-server.js";
import { createMetrics, type Metrics } from "./server/metrics.js";
import { createAuthentication } from "./server/plugins/authentication.js";
import { createCallerContext } from "./server/plugins/caller-context.js";
import { createReadiness, type ReadinessReport } from "./server/readiness.js";
import { traceTokenCache } from "./telemetry/instrument.js";
import { createAuditLog } from "./tokens/audit.js";

export interface AppDeps {
  logger?: Logger;
  /** Options over `config.embeddedEmulator`'s, used only when the gateway embeds the emulator. */
  emulator?: EmulatorOptions;
  /** Replaces the ACS client (tests use this only to inject faults; normal tests use the emulator). */
  identity?: IdentityProvider;
  metrics?: Metrics;
}

/** A wired gateway; its services are the very objects every request's GraphQL context carries. */
export interface App extends GatewayServices {
  config: Readonly<Config>;
  server: HttpServer;
  cache: TokenCache;
  metrics: Metrics;
  /** The embedded emulator, when the gateway started one. */
  emulator: Emulator | undefined;
  /** The ACS endpoint in use (the emulator's when embedded); no access key with Entra ID. */
  acs: { endpoint: string; accessKey: string | undefined };
  /** The directory as the services write to it (`settled()` awaits its background writes). */
  directoryRecords: DirectoryRecords;
  /**
   * The directory, its database (`db.status()`: `idle` in memory and not used yet, `opening`,
   * `open`, or `failed` and retrying), dispatcher and start-up import; undefined when the gateway
   * keeps no database (createApp given its own settings, without DATABASE_URL nor
   * DIRECTORY_DATA_DIR). /readyz reports the state, but never as unready.
   */
  directoryDb: OpenedDirectory | undefined;
  /** Listens on `config.host:config.port` (or the given port); resolves to the GraphQL URL. */
  listen(port?: number): Promise<string>;
  readiness(): Promise<ReadinessReport>;
  /** Stops accepting requests, drains in-flight ones, then closes what they used (see `close`). */
  close(): Promise<void>;
}

/**
 * Wires the layers (docs/architecture.md), and only wires: each decision is made in the module
 * named for it (app/*), request-time behaviour lives in the plugins under server/plugins and in
 * the services (tokens/*). No listening and no process-wide side effects, so tests create as many
 * gateways in one process as they need. Whatever is opened is recorded in `resources` as soon as it
 * exists, so a failed start releases it (app/shutdown.ts).
 */
export async function createApp(config: Readonly<Config>, deps: AppDeps = {}): Promise<App> {
  const logger = deps.logger ?? createLogger({ level: config.logLevel });
  const metrics = deps.metrics ?? createMetrics();
  const resources: Resources = { limiters: [], startupWork: [] };

  try {
    const resource = await openAcsResource(config, { logger, emulator: deps.emulator });
    resources.emulator = resource.emulator;

    const redis = (resources.redis = await connectSharedRedis(config, logger));
    const cache = (resources.cache = traceTokenCache(
      createTokenCache(config, {
        logger: logger.child({ component: "cache" }),
        acs: tokenCacheKeying(config, resource),
        redisClient: redis,
        onWait: (scope) => metrics.cacheWaits.inc({ scope }),
        onBreakerOpen: () => metrics.cacheBreakerOpened.inc(),
        onLookup: (result) => metrics.cacheRequests.inc({ result }),
      }),
    ));
    registerCacheReadyGauge(metrics.registry, cache);

    // Not awaited (docs/directory.md): PGlite's start costs seconds, and calls wait for the open.
    const database = (resources.database = openGatewayDatabase(config, logger));
    // Redis is read only for mappings an earlier version kept there (with a database to import to).
    const mappingRedis = (resources.mappingRedis = database
      ? await connectMappingRedis(config, logger)
      : undefined);
    const mappings = (resources.mappings = openMappingStore({
      acsEndpoint: resource.endpoint,
      db: database,
      redis: mappingRedis,
      config,
      logger,
    }));

    const opened = database
      ? openGatewayDirectory(config, { db: database, logger, metrics, mappings })
      : undefined;
    resources.dispatcher = opened?.dispatcher;
    if (opened) {
      resources.startupWork.push(opened.imported);
    }
    const directoryRecords = (resources.directoryWrites = opened
      ? createDirectoryRecords({
          directory: opened.directory,
          logger: logger.child({ component: "directory" }),
          registry: metrics.registry,
        })
      : noDirectory());

    const { budget, limiters } = createAcsBudget(config, { redis, logger, metrics });
    resources.limiters.push(...limiters);

    const readiness = createReadiness({
      acsEndpoint: resource.endpoint,
      cacheReady: () => cache.isReady(),
      databaseState: database ? () => database.status().state : undefined,
    });
    const upstream = deps.identity ?? createAcsClient(resource, { metrics, logger });
    await refuseRejectedCredentials(upstream, resource);

    const { services, provisioner } = createGatewayServices({
      identity: readiness.track(upstream),
      budget,
      cache,
      mappings,
      logger,
      directory: directoryRecords,
      customId: config.directory.customId,
      audit: createAuditLog({ logger, counter: metrics.auditEvents }),
      provisioning: {
        // A reservation's lease is the request timeout: a creator that died blocks its caller no
        // longer than one request may take (a live one renews it, provisioning.ts).
        leaseMs: config.http.requestTimeoutMs,
        afterStep: exitAfterStep(config.testExitAfterStep),
      },
    });
    resources.provisioner = provisioner;
    // Identities a crash left recorded but unconfirmed: confirmed once the database is open, in the
    // background (each is its caller's already: `get` returns pending identities too). In memory,
    // or without a database, nothing survived to recover.
    if (database && !database.inMemory) {
      resources.startupWork.push(
        database.ready.then(() => recoverPendingIdentities(provisioner, logger)),
      );
    }

    const verifier = createBearerVerifier(config, logger);
    const server = (resources.server = await createHttpServer({
      config,
      schema: await buildGatewaySchema(),
      createContext: createCallerContext({
        authenticate: createAuthentication({
          verifier,
          routerSecret: config.routerSecret,
          production: config.production,
        }),
        services,
        acsEndpoint: resource.endpoint,
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
      ...services,
      config,
      server,
      cache,
      metrics,
      directoryRecords,
      directoryDb: opened,
      emulator: resource.emulator,
      acs: { endpoint: resource.endpoint, accessKey: resource.accessKey },
      readiness: () => readiness.report(),
      async listen(port = config.port) {
        await server.fastify.listen({ host: config.host, port });
        const address = server.fastify.server.address();
        return graphqlUrl(
          config.host,
          typeof address === "object" && address ? address.port : port,
        );
      },
      close() {
        closed ??= releaseResources(resources, logger);
        return closed;
      },
    };
  } catch (error) {
    await releaseResources(resources, logger);
    throw error;
  }
}
