import { createHash } from "node:crypto";
import type { Config } from "../config.js";
import type { Db } from "../directory/index.js";
import { createLegacyRedisMappings } from "../identity/legacy-redis-mappings.js";
import { createSqlUserMappingStore } from "../identity/sql-user-mapping-store.js";
import {
  createMemoryUserMappingStore,
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
export function mappingResourceOf(acsEndpoint: string): string {
  return createHash("sha256").update(new URL(acsEndpoint).host).digest("hex").slice(0, 12);
}

/**
 * Where the self-service mappings live: the gateway's SQL database (PostgreSQL with DATABASE_URL,
 * else the embedded PGlite; app/directory.ts), the same store as the directory, so Redis holds no
 * durable data. Callers an earlier version mapped in Redis are imported on first sight, as long as
 * Redis can answer. Without a database (`createApp` given its own settings without DATABASE_URL
 * nor DIRECTORY_DATA_DIR), this process's memory: one instance, nothing kept.
 */
export function openMappingStore(deps: {
  acsEndpoint: string;
  db: Db | undefined;
  /** The legacy mappings' own Redis connection (redis-connections.ts); none without Redis. */
  redis: RedisClient | undefined;
  config: Readonly<Config>;
  logger: Logger;
}): UserMappingStore {
  const { logger } = deps;
  if (!deps.db) {
    return createMemoryUserMappingStore();
  }
  const resource = mappingResourceOf(deps.acsEndpoint);
  let lastSkipWarning = -Infinity;
  return createSqlUserMappingStore({
    db: deps.db,
    resource,
    importFrom: deps.redis
      ? createLegacyRedisMappings({
          redis: deps.redis,
          keyPrefix: mappingKeyPrefix(deps.config.redisKeyPrefix, resource),
        })
      : undefined,
    onImportSkipped: (error) => {
      if (performance.now() - lastSkipWarning >= IMPORT_SKIPPED_LOG_INTERVAL_MS) {
        lastSkipWarning = performance.now();
        logger.warn(
          { err: error instanceof Error ? error.message : String(error) },
          "Redis could not be asked for the mappings an earlier version stored there; new callers get their identity from the database",
        );
      }
    },
  });
}
