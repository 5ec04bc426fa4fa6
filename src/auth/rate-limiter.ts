import { createBreaker } from "../cache/breaker.js";
import { hashTag, redisScript, runScript, type RedisClient } from "../redis/index.js";
import type { Logger } from "../logger.js";

export interface RateLimitVerdict {
  allowed: boolean;
  /** Seconds until the caller's budget renews (0 when allowed, at least 1 when refused). */
  retryAfterSeconds: number;
  /** Calls left in this window after this one. */
  remaining: number;
}

export interface RateLimiter {
  /** Counts one call for `callerKey` (a `Caller.key`) and says whether it may go ahead. Never throws. */
  consume(callerKey: string): Promise<RateLimitVerdict>;
  close(): Promise<void>;
}

export interface RateLimiterOptions {
  /** Calls allowed per caller per window. */
  limit: number;
  windowSeconds: number;
  /** Shared budget across instances; without it (or while it fails) each instance counts alone. */
  redis?: RedisClient | undefined;
  /** Prefix of every Redis key (`rateLimitKeyPrefix(REDIS_KEY_PREFIX)`, e.g. `acsgw:rl:`). */
  keyPrefix: string;
  logger?: Logger | undefined;
  /** Clock in ms, for tests. @default Date.now */
  now?: () => number;
  /**
   * Longest wait for Redis before counting locally instead; a slow Redis must not slow every
   * token request. The shared client's own commandTimeout usually fires first. @default 500
   */
  timeoutMs?: number;
  /** Callers tracked in memory at most (oldest windows dropped first). @default 100000 */
  maxLocalCallers?: number;
}

/**
 * Fixed windows aligned to the epoch (so every instance agrees on the window without talking),
 * one counter per caller and window: INCR, and on the first hit PEXPIRE to just past the window,
 * in one script so a counter can never be left without an expiry. One key per call (hash-tagged
 * by caller), so it works unchanged on Redis Cluster. Fixed windows allow up to twice the limit
 * across a window boundary; for a guard against runaway clients rather than billing, that is the
 * price of one key and one round trip.
 */
const CONSUME = redisScript(`
local count = redis.call("INCR", KEYS[1])
if count == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end
return count`);

class RedisTimeout extends Error {}

export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const { limit, redis, keyPrefix, logger } = options;
  if (!Number.isInteger(limit) || limit < 1 || !(options.windowSeconds > 0)) {
    throw new RangeError("rate limiter: limit must be a whole number >= 1 and windowSeconds > 0");
  }
  const windowMs = options.windowSeconds * 1000;
  const now = options.now ?? Date.now;
  const timeoutMs = options.timeoutMs ?? 500;
  const maxLocal = options.maxLocalCallers ?? 100_000;
  /** Map order is insertion order: an entry is re-inserted when its window changes, so the first entries belong to the oldest windows. */
  const local = new Map<string, { window: number; count: number }>();
  let redisFailing = false;
  let closed = false;
  // As the token cache's: a Redis that does not answer (paused, partitioned) costs the first five
  // calls a timeout each, then the calls count locally at once for a second before one tries again.
  const breaker = createBreaker({ now });
  // A connection made again deserves a try at once.
  const reconnected = () => breaker.success();
  redis?.on("ready", reconnected);

  function verdict(count: number, window: number): RateLimitVerdict {
    const allowed = count <= limit;
    const retryAfterSeconds = allowed
      ? 0
      : Math.max(1, Math.ceil(((window + 1) * windowMs - now()) / 1000));
    return { allowed, retryAfterSeconds, remaining: Math.max(0, limit - count) };
  }

  function consumeLocally(callerKey: string, window: number): RateLimitVerdict {
    let entry = local.get(callerKey);
    if (!entry || entry.window !== window) {
      local.delete(callerKey);
      entry = { window, count: 0 };
      local.set(callerKey, entry);
      // Bounded: past the bound the oldest entry goes. Only a caller with 100k identities can
      // profit (by resetting one of them), and such a caller has 100k budgets anyway.
      if (local.size > maxLocal) {
        local.delete(local.keys().next().value!);
      }
    }
    entry.count++;
    return verdict(entry.count, window);
  }

  async function countInRedis(client: RedisClient, callerKey: string, window: number) {
    let timer: NodeJS.Timeout | undefined;
    try {
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new RedisTimeout("rate limiter: Redis timed out")),
          timeoutMs,
        );
      });
      const count = await Promise.race([
        runScript(
          client,
          CONSUME,
          [`${keyPrefix}${hashTag(callerKey)}:${window}`],
          [windowMs + 1000],
        ),
        deadline,
      ]);
      if (typeof count !== "number") {
        throw new Error("rate limiter: unexpected Redis reply");
      }
      return count;
    } finally {
      clearTimeout(timer);
    }
  }

  function outage(error: unknown) {
    // One line per outage, not one per request: an outage under load would otherwise flood logs.
    if (!redisFailing) {
      redisFailing = true;
      logger?.warn(
        { err: error instanceof Error ? error.message : String(error) },
        "rate limiter: Redis unavailable; limiting per instance until it is back",
      );
    }
  }

  return {
    async consume(callerKey) {
      const window = Math.floor(now() / windowMs);
      if (redis && !closed) {
        if (redis.status !== "ready") {
          // Not connected: don't send (a client with an offline queue would hold the request).
          outage(new Error(`Redis connection is ${redis.status}`));
        } else if (breaker.claim()) {
          try {
            const count = await countInRedis(redis, callerKey, window);
            breaker.success();
            if (redisFailing) {
              redisFailing = false;
              logger?.info("rate limiter: Redis is back; budgets are shared again");
            }
            return verdict(count, window);
          } catch (error) {
            // Fail open to a per-instance budget: a Redis outage must not stop token refreshes,
            // but each instance still limits each caller.
            breaker.failure();
            outage(error);
          }
        }
      }
      return consumeLocally(callerKey, window);
    },
    async close() {
      // No timers outlive a call, and the Redis client is shared (its owner closes it).
      closed = true;
      redis?.off("ready", reconnected);
      local.clear();
    },
  };
}
