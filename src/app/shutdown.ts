import type { Emulator } from "@acs-identity-gateway/emulator";
import type { RateLimiter } from "../auth/rate-limiter.js";
import type { TokenCache } from "../cache/token-cache.js";
import type { Db, WebhookDispatcher } from "../directory/index.js";
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
  /** The directory's background writes (settled before its database closes). */
  directoryWrites?: { settled(): Promise<void>; stop(): void };
  dispatcher?: WebhookDispatcher;
  /** Start-up work in the background (the directory's import, recovery): waited for, bounded. */
  startupWork: Promise<unknown>[];
  mappings?: UserMappingStore;
  /** The gateway's database (the directory's and the mappings'): closed after both. */
  database?: Db;
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
  // The directory's last writes and the start-up work (bounded), then the dispatcher (it hands its
  // claims back), then the mapping store, and the database they all use last.
  (r) => bounded(r.directoryWrites?.settled(), DIRECTORY_SETTLE_MS),
  // Writes still retrying after that are given up, each logged with its user id.
  (r) => Promise.resolve(r.directoryWrites?.stop()),
  (r) => bounded(Promise.allSettled(r.startupWork), DIRECTORY_SETTLE_MS),
  (r) => r.dispatcher?.stop(),
  (r) => r.mappings?.close(),
  (r) => r.database?.close(),
  (r) => r.cache?.close(),
  (r) => (r.redis ? Promise.resolve(r.redis.disconnect()) : undefined),
  (r) => (r.mappingRedis ? Promise.resolve(r.mappingRedis.disconnect()) : undefined),
  (r) => r.emulator?.close(),
];

/** How long shutdown waits for the directory's background writes before closing it (ms). */
const DIRECTORY_SETTLE_MS = 5000;

/** `work`, or nothing once `ms` passed (a stuck write never holds the shutdown). */
function bounded(work: Promise<unknown> | undefined, ms: number): Promise<unknown> | undefined {
  if (!work) {
    return undefined;
  }
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    work,
    new Promise((resolve) => (timer = setTimeout(resolve, ms).unref())),
  ]).finally(() => clearTimeout(timer));
}

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
