import type { RedisClient } from "../cache/redis-client.js";
import { redisScript, runScript } from "../cache/redis-scripts.js";
import type { Logger } from "../logger.js";

export interface RateLimitVerdict {
  allowed: boolean;
  /** Seconds until the caller's budget renews (0 when allowed). */
  retryAfterSeconds: number;
  remaining: number;
}

export interface RateLimiter {
  consume(callerKey: string): Promise<RateLimitVerdict>;
  close(): Promise<void>;
}

export interface RateLimiterOptions {
  limit: number;
  windowSeconds: number;
  /** Shared budget across instances; without it (or while it fails) each instance counts alone. */
  redis?: RedisClient | undefined;
  keyPrefix: string;
  logger?: Logger;
  now?: () => number;
  /** Callers tracked in memory at most (oldest windows dropped first). @default 100000 */
  maxLocalCallers?: number;
}

/**
 * Fixed windows, one counter per caller and window: INCR, and on the first hit PEXPIRE to the
 * window's end, in one script so the counter can never be left without an expiry. One key per
 * call, so it works unchanged on Redis Cluster.
 */
const CONSUME = redisScript(`
local count = redis.call("INCR", KEYS[1])
if count == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end
return count`);

export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const { limit, redis, keyPrefix, logger } = options;
  const windowMs = options.windowSeconds * 1000;
  const now = options.now ?? Date.now;
  const maxLocal = options.maxLocalCallers ?? 100_000;
  const local = new Map<string, { window: number; count: number }>();
  let redisFailing = false;

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
      local.delete(callerKey); // re-insert at the end: Map order is then oldest-first
      entry = { window, count: 0 };
      local.set(callerKey, entry);
      if (local.size > maxLocal) {
        local.delete(local.keys().next().value!);
      }
    }
    entry.count++;
    return verdict(entry.count, window);
  }

  return {
    async consume(callerKey) {
      const window = Math.floor(now() / windowMs);
      if (redis) {
        try {
          const count = (await runScript(
            redis,
            CONSUME,
            [`${keyPrefix}{${callerKey}}:${window}`],
            [windowMs],
          )) as number;
          if (redisFailing) {
            redisFailing = false;
            logger?.info("rate limiter: Redis is back; budgets are shared again");
          }
          return verdict(count, window);
        } catch (error) {
          // Fail open to a per-instance budget: a Redis outage must not stop token refreshes,
          // but each instance still limits each caller.
          if (!redisFailing) {
            redisFailing = true;
            logger?.warn(
              { err: error instanceof Error ? error.message : String(error) },
              "rate limiter: Redis unavailable; limiting per instance until it is back",
            );
          }
        }
      }
      return consumeLocally(callerKey, window);
    },
    async close() {
      local.clear();
    },
  };
}
