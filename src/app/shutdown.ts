import type { Emulator } from "@acs-identity-gateway/emulator";
import type { RateLimiter } from "../auth/rate-limiter.js";
import type { TokenCache } from "../cache/token-cache.js";
import type { UserMappingStore } from "../identity/user-mapping-store.js";
import type { Logger } from "../logger.js";
import type { RedisClient } from "../redis/index.js";
import type { HttpServer } from "../server/http-server.js";

/** What an app's `close()` releases, each once, in the order of `SHUTDOWN_ORDER`. */
export interface Resources {
  server?: HttpServer;
  limiters: RateLimiter[];
  /** Self-service provisioning: its background clean-ups stop before the stores they wait for. */
  provisioner?: { close(): void };
  mappings?: UserMappingStore;
  /** PostgreSQL connections of the mapping store (DATABASE_URL). */
  pool?: { end(): Promise<void> };
  cache?: TokenCache;
  redis?: RedisClient;
  mappingRedis?: RedisClient;
  emulator?: Emulator;
}

/**
 * Shutdown order, explicitly: stop taking requests and drain the ones in flight first (they still
 * need everything below), then what requests use, then the Redis connections those share, and the
 * embedded emulator last (the drained requests may have been waiting on it).
 */
const SHUTDOWN_ORDER: ((r: Resources) => Promise<unknown> | undefined)[] = [
  (r) => r.server?.fastify.close(),
  (r) => Promise.all(r.limiters.map((limiter) => limiter.close())),
  (r) => Promise.resolve(r.provisioner?.close()),
  (r) => r.mappings?.close(),
  (r) => r.pool?.end(),
  (r) => r.cache?.close(),
  (r) => (r.redis ? Promise.resolve(r.redis.disconnect()) : undefined),
  (r) => (r.mappingRedis ? Promise.resolve(r.mappingRedis.disconnect()) : undefined),
  (r) => r.emulator?.close(),
];

/** Releases what was opened, in `SHUTDOWN_ORDER`; a failed step is logged and the rest go on. */
export async function releaseResources(resources: Resources, logger: Logger): Promise<void> {
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
