import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisClient } from "../../src/cache/redis-client.js";
import { createRateLimiter } from "../../src/auth/rate-limiter.js";
import { createLogger } from "../../src/logger.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

const silent = createLogger({ level: "silent" });

describe("the per-caller rate limit in memory", () => {
  it("refuses the call after the limit until the window rolls over", async () => {
    let now = 1_000_000_000_000;
    const limiter = createRateLimiter({
      limit: 3,
      windowSeconds: 60,
      keyPrefix: "t:",
      now: () => now,
    });
    for (let i = 0; i < 3; i++) {
      expect((await limiter.consume("a")).allowed).toBe(true);
    }
    const refused = await limiter.consume("a");
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfterSeconds).toBeGreaterThan(0);
    expect(refused.retryAfterSeconds).toBeLessThanOrEqual(60);
    expect((await limiter.consume("b")).allowed).toBe(true);
    now += 60_000;
    expect((await limiter.consume("a")).allowed).toBe(true);
  });
});

describe("the per-caller rate limit on Redis", () => {
  let redis: RedisProcess;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(() => redis.stop());

  it("shares one budget across instances, leaves nothing without a TTL, and fails open per instance", async () => {
    const clients = [1, 2].map(() => createRedisClient({ mode: "single", url: redis.url }, silent));
    await Promise.all(
      clients.map((c) => new Promise((r) => (c.status === "ready" ? r(null) : c.once("ready", r)))),
    );
    const [one, two] = clients.map((client) =>
      createRateLimiter({
        limit: 4,
        windowSeconds: 60,
        keyPrefix: "rl:",
        redis: client,
        logger: silent,
      }),
    );
    const verdicts = [];
    for (let i = 0; i < 3; i++) {
      verdicts.push(await one!.consume("caller"), await two!.consume("caller"));
    }
    expect(verdicts.map((v) => v.allowed)).toEqual([true, true, true, true, false, false]);
    const keys = await redis.client().keys("rl:*");
    expect(keys.length).toBe(1);
    expect(await redis.client().pttl(keys[0]!)).toBeGreaterThan(0);

    await redis.kill();
    // Redis down: each instance limits on its own instead of failing the request.
    const local = [];
    for (let i = 0; i < 5; i++) {
      local.push((await one!.consume("other")).allowed);
    }
    expect(local).toEqual([true, true, true, true, false]);
    clients.forEach((c) => c.disconnect());
  });
});
