import type pg from "pg";
import type { Config } from "../config.js";
import {
  createDirectory,
  createWebhookDispatcher,
  openDirectoryDb,
  type Db,
  type Directory,
  type OpenedDirectoryDb,
  type WebhookDispatcher,
} from "../directory/index.js";
import type { UserMappingStore } from "../identity/user-mapping-store.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../server/metrics.js";

type DirectoryState = "idle" | "opening" | "open" | "failed";
type StatusDb = Db & { status(): { state: DirectoryState } };

/** The directory as the app holds it: what the services write to, and what shutdown stops. */
export interface OpenedDirectory {
  directory: Directory;
  db: Db;
  /** For readiness: never `failed` for a PGlite still opening (the start does not wait for it). */
  status(): { state: DirectoryState };
  dispatcher: WebhookDispatcher | undefined;
  /** The start-up import of the mappings already stored (for tests: await it). */
  imported: Promise<number>;
}

/**
 * A Db that opens on first use. Only for the in-memory PGlite (no DATABASE_URL, no data folder:
 * tests and embeddings), where opening costs seconds of initdb CPU and keeps nothing: a gateway
 * that never touches its directory must not pay for it (dozens of test gateways per process).
 */
function lazyDb(open: () => OpenedDirectoryDb): StatusDb {
  let opened: OpenedDirectoryDb | undefined;
  const db = () => (opened ??= open());
  return {
    dialect: "pglite",
    status: () => (opened ? opened.status() : { state: "idle" }),
    query: (sql, params) => db().query(sql, params),
    transaction: (fn) => db().transaction(fn),
    listen: (channel, onNotify, onError) => db().listen(channel, onNotify, onError),
    close: async () => opened?.close(),
  };
}

/**
 * Opens the identity directory (docs/directory.md) off the start's critical path: never awaited
 * here, every call waits for the open in progress. With DATABASE_URL it shares the mapping store's
 * pool (one PostgreSQL, one set of connections; the pool is the app's and is ended after the
 * directory is closed); otherwise an embedded PGlite in `config.directory.dataDir`, or in memory.
 * Undefined when there is none to open (see below).
 * Then the webhook dispatcher when WEBHOOK_URLS is set, and the import of the self-service
 * mappings already stored, in the background.
 */
export function openGatewayDirectory(
  config: Readonly<Config>,
  deps: {
    logger: Logger;
    metrics: Metrics;
    pool: pg.Pool | undefined;
    mappings: UserMappingStore;
  },
): OpenedDirectory | undefined {
  const logger = deps.logger.child({ component: "directory" });
  const { webhooks } = config.directory;
  // Unset only when createApp's caller passed its own settings (config/directory.ts): without
  // DATABASE_URL such a gateway keeps no directory, unless webhooks need one (then in memory).
  const dataDir = config.directory.dataDir ?? (webhooks ? "memory" : undefined);
  if (!deps.pool && dataDir === undefined) {
    return undefined;
  }
  if (!deps.pool && config.redis.mode !== "memory") {
    // Several instances share Redis but each would have its own embedded database: say so once.
    logger.warn(
      { dataDir },
      "REDIS_URL without DATABASE_URL: the identity directory is this instance's embedded PGlite, not shared. Each instance has its own directory, idempotency by externalId holds per instance only, and webhooks are sent for this instance's changes. Set DATABASE_URL to share one directory between instances.",
    );
  }
  const open = () =>
    openDirectoryDb({
      logger,
      ...(deps.pool ? { pool: deps.pool } : dataDir !== "memory" ? { dataDir } : {}),
    });
  const inMemory = !deps.pool && dataDir === "memory";
  const db: StatusDb = inMemory ? lazyDb(open) : open();
  const directory = createDirectory({ db, logger });

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
    inMemory && !dispatcher ? Promise.resolve(0) : importMappings(directory, deps.mappings, logger);
  return { directory, db, status: () => db.status(), dispatcher, imported };
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
    for await (const userId of mappings.listUserIds?.() ?? []) {
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
