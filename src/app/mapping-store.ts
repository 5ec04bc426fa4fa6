import { createHash } from "node:crypto";
import type pg from "pg";
import type { Config } from "../config.js";
import {
  createMemoryUserMappingStore,
  createRedisUserMappingStore,
  type UserMappingStore,
} from "../identity/user-mapping-store.js";
import type { Logger } from "../logger.js";
import { mappingKeyPrefix, type RedisClient } from "../redis/index.js";

/** At most one "Redis could not be asked" line per this many ms: an outage would log per caller. */
const IMPORT_SKIPPED_LOG_INTERVAL_MS = 60_000;

/**
 * The ACS resource the mappings belong to: a hash of its endpoint's host, not of its key (a key
 * rotation keeps the identities), so repointing a deployment at another resource never maps a
 * caller to a foreign identity.
 */
function mappingResourceOf(acsEndpoint: string): string {
  return createHash("sha256").update(new URL(acsEndpoint).host).digest("hex").slice(0, 12);
}

/**
 * Where the self-service mappings live: PostgreSQL with DATABASE_URL (migrated here, and callers
 * mapped in Redis before it was set imported on first use), else Redis when the gateway has one,
 * else this process's memory (one development instance).
 *
 * Returns the pool with the store: its owner ends it after the store is closed (the store does
 * not own it). When the migration fails, the pool is ended here and the error thrown.
 */
export async function openMappingStore(
  config: Readonly<Config>,
  deps: {
    acsEndpoint: string;
    /** The mapping store's own Redis connection (redis-connections.ts); none in memory mode. */
    redis: RedisClient | undefined;
    logger: Logger;
  },
): Promise<{ store: UserMappingStore; pool?: pg.Pool }> {
  const { logger } = deps;
  const resource = mappingResourceOf(deps.acsEndpoint);
  const redisStore = deps.redis
    ? createRedisUserMappingStore({
        redis: deps.redis,
        keyPrefix: mappingKeyPrefix(config.redisKeyPrefix, resource),
      })
    : undefined;
  if (!config.databaseUrl) {
    return { store: redisStore ?? createMemoryUserMappingStore() };
  }
  // node-postgres and the migrations load only when PostgreSQL is configured.
  const { createMappingPool, createPgUserMappingStore } =
    await import("../identity/pg-user-mapping-store.js");
  const { migrate } = await import("../identity/migrations/index.js");
  const pool = createMappingPool(config.databaseUrl, (error) =>
    logger.warn({ err: error.message }, "mapping database connection error"),
  );
  try {
    await migrate(pool, logger.child({ component: "mapping-db" }));
  } catch (error) {
    await pool.end().catch(() => {});
    throw error;
  }
  // Callers mapped in Redis before DATABASE_URL was set keep their identity (imported once), as
  // long as Redis can answer: it is only a cache here, so its outage refuses nobody.
  let lastSkipWarning = -Infinity;
  const store = createPgUserMappingStore({
    pool,
    resource,
    importFrom: redisStore,
    onImportSkipped: (error) => {
      if (performance.now() - lastSkipWarning >= IMPORT_SKIPPED_LOG_INTERVAL_MS) {
        lastSkipWarning = performance.now();
        logger.warn(
          { err: error instanceof Error ? error.message : String(error) },
          "Redis could not be asked for mappings stored before DATABASE_URL was set; new callers get their identity from PostgreSQL",
        );
      }
    },
  });
  return { store, pool };
}
