import { createRateLimiter, type RateLimiter } from "../auth/rate-limiter.js";
import type { Config } from "../config.js";
import type { Logger } from "../logger.js";
import { rateLimitKeyPrefix, type RedisClient } from "../redis/index.js";
import type { Metrics } from "../server/metrics.js";
import { createUpstreamBudget, type UpstreamBudget } from "../tokens/upstream-budget.js";

/**
 * The ACS-call budget (RATE_LIMIT_ACS_CALLS_PER_MINUTE, RATE_LIMIT_ADMIN_ACS_CALLS_PER_MINUTE):
 * end users and admins counted apart, in Redis when the gateway has one (shared by every
 * instance), else in this process. Admins are unlimited unless a limit is configured.
 *
 * Returns the limiters with the budget: their owner closes them at shutdown.
 */
export function createAcsBudget(
  config: Readonly<Config>,
  deps: { redis: RedisClient | undefined; logger: Logger; metrics: Metrics },
): { budget: UpstreamBudget; limiters: RateLimiter[] } {
  const limiters: RateLimiter[] = [];
  const limiter = (limit: number, name: string) => {
    const created = createRateLimiter({
      limit,
      windowSeconds: config.limits.rateLimitWindowSeconds,
      redis: deps.redis,
      keyPrefix: `${rateLimitKeyPrefix(config.redisKeyPrefix)}${name}:`,
      logger: deps.logger.child({ component: "rate-limit" }),
    });
    limiters.push(created);
    return created;
  };
  const budget = createUpstreamBudget({
    endUser: limiter(config.limits.acsCallsPerWindow, "user"),
    admin:
      config.limits.adminAcsCallsPerWindow > 0
        ? limiter(config.limits.adminAcsCallsPerWindow, "admin")
        : undefined,
    onRefused: (caller) => deps.metrics.rateLimited.inc({ caller }),
  });
  return { budget, limiters };
}
