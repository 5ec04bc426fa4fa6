import type { Config } from "../config.js";
import {
  createDirectory,
  createWebhookDispatcher,
  DIRECTORY_SCHEMA,
  openDirectoryDb,
  type Db,
  type Directory,
  type OpenedDirectoryDb,
  type WebhookDispatcher,
} from "../directory/index.js";
import { MAPPING_SCHEMA } from "../identity/mapping-schema.js";
import type { UserMappingStore } from "../identity/user-mapping-store.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../server/metrics.js";

type DirectoryState = "idle" | "opening" | "open" | "failed";

/**
 * The gateway's SQL database: the directory's and the self-service mappings' one home. In memory
 * (PGlite, no folder) it opens on first use, and nothing survives the process to be recovered.
 */
export type GatewayDatabase =
  | (OpenedDirectoryDb & { readonly inMemory: false })
  | (Db & { readonly inMemory: true; status(): { state: DirectoryState } });

/** The directory as the app holds it: what the services write to, and what shutdown stops. */
export interface OpenedDirectory {
  directory: Directory;
  /** Its `status()` is readiness's (never `failed` for a PGlite still opening). */
  db: GatewayDatabase;
  dispatcher: WebhookDispatcher | undefined;
  /** The start-up import of the mappings already stored (for tests: await it). */
  imported: Promise<number>;
}

/**
 * A Db that opens on first use. Only for the in-memory PGlite (no DATABASE_URL, no data folder:
 * tests and embeddings), where opening costs seconds of initdb CPU and keeps nothing: a gateway
 * that never touches its directory must not pay for it (dozens of test gateways per process).
 */
function lazyDb(open: () => OpenedDirectoryDb): GatewayDatabase & { inMemory: true } {
  let opened: OpenedDirectoryDb | undefined;
  const db = () => (opened ??= open());
  return {
    dialect: "pglite",
    inMemory: true as const,
    status: () => (opened ? opened.status() : { state: "idle" }),
    query: (sql, params) => db().query(sql, params),
    transaction: (fn) => db().transaction(fn),
    listen: (channel, onNotify, onError) => db().listen(channel, onNotify, onError),
    close: async () => opened?.close(),
  };
}

/**
 * Opens the gateway's SQL database (docs/directory.md) off the start's critical path: never awaited
 * here, every call waits for the open in progress, and both schemas (the directory's and the
 * self-service mappings') are migrated by the open. PostgreSQL with DATABASE_URL; otherwise an
 * embedded PGlite in `config.directory.dataDir`, or in memory (opened on first use: a gateway that
 * never touches it must not pay seconds of initdb). Undefined when there is none to open: only
 * `createApp` given its own settings without DATABASE_URL nor DIRECTORY_DATA_DIR (tests and
 * embeddings), unless webhooks need one (then in memory).
 */
export function openGatewayDatabase(
  config: Readonly<Config>,
  logger: Logger,
): GatewayDatabase | undefined {
  const schemas = [DIRECTORY_SCHEMA, MAPPING_SCHEMA];
  const log = logger.child({ component: "database" });
  if (config.databaseUrl !== undefined) {
    return {
      ...openDirectoryDb({ logger: log, databaseUrl: config.databaseUrl, schemas }),
      inMemory: false as const,
    };
  }
  const dataDir = config.directory.dataDir ?? (config.directory.webhooks ? "memory" : undefined);
  if (dataDir === undefined) {
    return undefined;
  }
  if (config.redis.mode !== "memory") {
    // Several instances share Redis but each would have its own embedded database: say so once.
    log.warn(
      { dataDir },
      "REDIS_URL without DATABASE_URL: the self-service mappings and the identity directory are in this instance's embedded PGlite, not shared. Run one instance like this, or set DATABASE_URL: with several, a user served by two instances gets an identity on each, idempotency by externalId holds per instance only, and each instance sends webhooks for its own changes.",
    );
  }
  if (dataDir === "memory") {
    return lazyDb(() => openDirectoryDb({ logger: log, schemas }));
  }
  return { ...openDirectoryDb({ logger: log, dataDir, schemas }), inMemory: false as const };
}

/**
 * The identity directory over the gateway's database, then the webhook dispatcher when
 * WEBHOOK_URLS is set, and the import of the self-service mappings already stored, in the
 * background.
 */
export function openGatewayDirectory(
  config: Readonly<Config>,
  deps: {
    db: GatewayDatabase;
    logger: Logger;
    metrics: Metrics;
    mappings: UserMappingStore;
  },
): OpenedDirectory {
  const logger = deps.logger.child({ component: "directory" });
  const { webhooks } = config.directory;
  const { db } = deps;
  // Events only for webhooks: without a dispatcher nothing would deliver or prune them.
  const directory = createDirectory({ db, logger, events: webhooks !== undefined });

  let dispatcher: WebhookDispatcher | undefined;
  if (webhooks) {
    dispatcher = createWebhookDispatcher({
      db,
      urls: webhooks.urls,
      secret: webhooks.secret,
      logger: logger.child({ component: "webhooks" }),
      registry: deps.metrics.registry,
    });
    dispatcher.start();
  }

  // In memory there is nothing to keep in step before the directory is used: the import runs on
  // the first open only if something opened it by then (the dispatcher did); otherwise skip it.
  const imported =
    db.inMemory && !dispatcher
      ? Promise.resolve(0)
      : importMappings(directory, deps.mappings, logger);
  return { directory, db, dispatcher, imported };
}

/**
 * The identities the gateway knew before the directory: the self-service mappings already stored
 * ("self-service", no external id: the store keeps only the caller's hashed key). Rows already
 * present are kept and no event is written (docs/directory.md, `import`), so every start may run
 * it. A failure is logged, never fatal: the next start imports again.
 */
async function importMappings(
  directory: Directory,
  mappings: UserMappingStore,
  logger: Logger,
): Promise<number> {
  try {
    let inserted = 0;
    let batch: string[] = [];
    const flush = async () => {
      if (batch.length > 0) {
        const result = await directory.import(
          batch.map((id) => ({ id, origin: "self-service" as const })),
        );
        inserted += result.inserted;
        batch = [];
      }
    };
    for await (const userId of mappings.listUserIds()) {
      batch.push(userId);
      if (batch.length >= 500) {
        await flush();
      }
    }
    await flush();
    if (inserted > 0) {
      logger.info({ inserted }, "imported self-service identities stored before the directory");
    }
    return inserted;
  } catch (error) {
    logger.warn(
      { err: error instanceof Error ? error.message : String(error) },
      "could not import the self-service mappings into the directory; the next start tries again",
    );
    return 0;
  }
}
