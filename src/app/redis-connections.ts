import type { Config } from "../config.js";
import type { Logger } from "../logger.js";
import { createRedisClient, type RedisClient } from "../redis/index.js";
import { traceRedis } from "../telemetry/instrument.js";

/** How long start-up waits for a Redis connection before going on without it. */
const CONNECT_WAIT_MS = 5000;

/** The mapping store's Redis command timeout (its own connection; the cache's is 250 ms). */
const MAPPING_COMMAND_TIMEOUT_MS = 2000;

/**
 * The Redis connection the token cache and the rate limiters share; none in memory mode. Without
 * an offline queue, commands sent before the connection is up fail at once, so start-up gives Redis
 * a moment. If it stays down the gateway starts anyway: the cache degrades (tokens straight from
 * ACS) and a Redis mapping store answers UPSTREAM_UNAVAILABLE until it is back.
 */
export async function connectSharedRedis(
  config: Readonly<Config>,
  logger: Logger,
): Promise<RedisClient | undefined> {
  if (config.redis.mode === "memory") {
    return undefined;
  }
  const redis = traceRedis(createRedisClient(config.redis, logger.child({ component: "redis" })));
  if (!(await waitUntilReady(redis, CONNECT_WAIT_MS))) {
    logger.warn("Redis is not reachable yet; starting without it");
  }
  return redis;
}

/**
 * The mapping store's own Redis connection; none in memory mode. The mapping store is data, not a
 * cache: a slow answer is better than a failed call, so it gets a longer command timeout than the
 * cache's 250 ms (which also counts this process's event-loop lag under load).
 */
export async function connectMappingRedis(
  config: Readonly<Config>,
  logger: Logger,
): Promise<RedisClient | undefined> {
  if (config.redis.mode === "memory") {
    return undefined;
  }
  const redis = traceRedis(
    createRedisClient(config.redis, logger.child({ component: "redis-mappings" }), {
      commandTimeoutMs: MAPPING_COMMAND_TIMEOUT_MS,
    }),
  );
  await waitUntilReady(redis, CONNECT_WAIT_MS);
  return redis;
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
