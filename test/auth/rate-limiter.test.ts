import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRateLimiter, type RateLimitVerdict } from "../../src/auth/rate-limiter.js";
import { createRedisClient, type RedisClient } from "../../src/redis/index.js";
import { createLogger } from "../../src/logger.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

const silent = createLogger({ level: "silent" });
/** 10:00:15 on some day: 15 s into a one-minute window. */
const T0 = Date.UTC(2030, 0, 1, 10, 0, 15);

function capture() {
  const lines: string[] = [];
  const logger = createLogger(
    { level: "debug" },
    new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    }),
  );
  return { logger, lines };
}

async function consumeTimes(
  limiter: { consume(k: string): Promise<RateLimitVerdict> },
  key: string,
  times: number,
) {
  const verdicts: RateLimitVerdict[] = [];
  for (let i = 0; i < times; i++) {
    verdicts.push(await limiter.consume(key));
  }
  return verdicts;
}

describe("the per-caller rate limit in memory", () => {
  it("refuses the call after the limit, says when to retry, and resets with the next window", async () => {
    let now = T0;
    const limiter = createRateLimiter({
      limit: 3,
      windowSeconds: 60,
      keyPrefix: "t:",
      now: () => now,
    });
    const allowed = await consumeTimes(limiter, "a", 3);
    expect(allowed.map((v) => [v.allowed, v.remaining, v.retryAfterSeconds])).toEqual([
      [true, 2, 0],
      [true, 1, 0],
      [true, 0, 0],
    ]);
    expect(await limiter.consume("a")).toEqual({
      allowed: false,
      remaining: 0,
      retryAfterSeconds: 45,
    });
    expect((await limiter.consume("b")).allowed).toBe(true);
    now += 44_500;
    expect((await limiter.consume("a")).retryAfterSeconds).toBe(1);
    now += 500;
    expect((await limiter.consume("a")).allowed).toBe(true);
    await limiter.close();
  });

  it("always says to retry within (0, window] seconds, wherever in the window the refusal falls", async () => {
    const windowStart = Date.UTC(2030, 0, 1, 10, 0, 0);
    for (const offset of [0, 1, 999, 1000, 30_000, 59_001, 59_999]) {
      const limiter = createRateLimiter({
        limit: 1,
        windowSeconds: 60,
        keyPrefix: "t:",
        now: () => windowStart + offset,
      });
      await limiter.consume("a");
      const refused = await limiter.consume("a");
      expect(refused.allowed).toBe(false);
      expect(refused.retryAfterSeconds).toBeGreaterThan(0);
      expect(refused.retryAfterSeconds).toBeLessThanOrEqual(60);
      // Retrying after that many seconds lands in the next window.
      expect(Math.floor((windowStart + offset + refused.retryAfterSeconds * 1000) / 60_000)).toBe(
        Math.floor((windowStart + offset) / 60_000) + 1,
      );
    }
  });

  it("keeps callers apart: one caller spending its budget leaves another's untouched", async () => {
    const limiter = createRateLimiter({
      limit: 2,
      windowSeconds: 60,
      keyPrefix: "t:",
      now: () => T0,
    });
    expect((await consumeTimes(limiter, "noisy", 10)).filter((v) => v.allowed)).toHaveLength(2);
    expect((await consumeTimes(limiter, "quiet", 2)).map((v) => v.remaining)).toEqual([1, 0]);
  });

  it("stays within its bound of tracked callers, dropping the oldest first", async () => {
    const limiter = createRateLimiter({
      limit: 1,
      windowSeconds: 60,
      keyPrefix: "t:",
      now: () => T0,
      maxLocalCallers: 2,
    });
    expect((await limiter.consume("a")).allowed).toBe(true);
    expect((await limiter.consume("a")).allowed).toBe(false);
    await limiter.consume("b");
    await limiter.consume("c"); // a, the oldest, is forgotten
    expect((await limiter.consume("a")).allowed).toBe(true);
    expect((await limiter.consume("c")).allowed).toBe(false);
  });

  it("rejects a nonsensical configuration at construction", () => {
    expect(() => createRateLimiter({ limit: 0, windowSeconds: 60, keyPrefix: "t:" })).toThrow(
      RangeError,
    );
    expect(() => createRateLimiter({ limit: 1, windowSeconds: 0, keyPrefix: "t:" })).toThrow(
      RangeError,
    );
  });
});

describe("the per-caller rate limit on Redis", () => {
  let redis: RedisProcess;
  const clients: RedisClient[] = [];
  const connect = async () => {
    const client = createRedisClient({ mode: "single", url: redis.url }, silent);
    clients.push(client);
    await new Promise((r) => (client.status === "ready" ? r(null) : client.once("ready", r)));
    return client;
  };
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    clients.forEach((c) => c.disconnect());
    await redis.stop();
  });

  it("shares one budget between two instances and leaves no key without a TTL", async () => {
    let now = T0;
    const [one, two] = await Promise.all(
      [1, 2].map(async () =>
        createRateLimiter({
          limit: 4,
          windowSeconds: 60,
          keyPrefix: "rl:",
          redis: await connect(),
          logger: silent,
          now: () => now,
        }),
      ),
    );
    const verdicts: RateLimitVerdict[] = [];
    for (let i = 0; i < 3; i++) {
      verdicts.push(await one!.consume("caller"), await two!.consume("caller"));
    }
    expect(verdicts.map((v) => v.allowed)).toEqual([true, true, true, true, false, false]);
    expect(verdicts.map((v) => v.remaining)).toEqual([3, 2, 1, 0, 0, 0]);
    expect(verdicts[4]!.retryAfterSeconds).toBe(45);
    // Another caller has its own budget.
    expect((await two!.consume("someone-else")).allowed).toBe(true);

    const keys = await redis.client().keys("rl:*");
    expect(keys.sort()).toHaveLength(2);
    for (const key of keys) {
      const ttl = await redis.client().pttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(61_000);
    }

    // The next window is a fresh budget on both instances.
    now += 45_000;
    expect((await one!.consume("caller")).allowed).toBe(true);
    expect((await two!.consume("caller")).remaining).toBe(2);
    await Promise.all([one!.close(), two!.close()]);
  });

  it("counts concurrent calls from two instances exactly", async () => {
    const [a, b] = await Promise.all(
      [1, 2].map(async () =>
        createRateLimiter({
          limit: 10,
          windowSeconds: 60,
          keyPrefix: "rc:",
          redis: await connect(),
          now: () => T0,
        }),
      ),
    );
    const verdicts = await Promise.all(
      Array.from({ length: 30 }, (_, i) => (i % 2 ? a! : b!).consume("burst")),
    );
    expect(verdicts.filter((v) => v.allowed)).toHaveLength(10);
  });

  it("fails open to a per-instance limit while Redis is down, logs once per outage, and shares again after", async () => {
    const { logger, lines } = capture();
    const limiter = createRateLimiter({
      limit: 4,
      windowSeconds: 60,
      keyPrefix: "ro:",
      redis: await connect(),
      logger,
      now: () => T0,
    });
    await consumeTimes(limiter, "caller", 2);

    await redis.kill();
    const local = await consumeTimes(limiter, "other", 6);
    // Still limited, by this instance alone.
    expect(local.map((v) => v.allowed)).toEqual([true, true, true, true, false, false]);
    expect(local[4]!.retryAfterSeconds).toBeGreaterThan(0);
    expect(lines.filter((l) => l.includes("Redis unavailable"))).toHaveLength(1);

    await redis.restart();
    const client = clients.at(-1)!;
    await new Promise((r) => (client.status === "ready" ? r(null) : client.once("ready", r)));
    expect((await limiter.consume("caller")).allowed).toBe(true);
    expect(lines.filter((l) => l.includes("Redis is back"))).toHaveLength(1);
    expect(await redis.client().keys("ro:*")).toHaveLength(1);
  });

  it("stops asking a Redis that does not answer after five timeouts, for a second at a time", async () => {
    let now = T0;
    const limiter = createRateLimiter({
      limit: 100,
      windowSeconds: 60,
      keyPrefix: "rp:",
      redis: await connect(),
      logger: silent,
      now: () => now,
    });
    /** Whether a call settled within this turn of the event loop (no Redis round trip waited). */
    const answeredAtOnce = async () => {
      const call = limiter.consume("caller");
      const settled = await Promise.race([
        call.then(() => true),
        new Promise<boolean>((resolve) => setImmediate(() => resolve(false))),
      ]);
      expect((await call).allowed).toBe(true);
      return settled;
    };
    await redis.pause();
    try {
      for (let i = 0; i < 5; i++) {
        expect(await answeredAtOnce()).toBe(false);
      }
      // Open: counted here without asking Redis...
      expect(await answeredAtOnce()).toBe(true);
      expect(await answeredAtOnce()).toBe(true);
      // ...until a second has passed, when one call asks again (and waits, Redis still paused),
      // and only one: the calls beside it count here.
      now += 1000;
      const burst = await Promise.all([answeredAtOnce(), answeredAtOnce(), answeredAtOnce()]);
      expect(burst.sort()).toEqual([false, true, true]);
      expect(await answeredAtOnce()).toBe(true);
    } finally {
      await redis.resume();
    }
    await limiter.close();
  });

  it("lets each of two instances count alone during an outage, and shares one budget again after a restart", async () => {
    const [one, two] = await Promise.all(
      [1, 2].map(async () =>
        createRateLimiter({
          limit: 3,
          windowSeconds: 60,
          keyPrefix: "rr:",
          redis: await connect(),
          logger: silent,
          now: () => T0,
        }),
      ),
    );
    const pair = clients.slice(-2);
    await redis.kill();
    // Fail open, per instance: each instance allows the limit, so together up to twice of it.
    const during = [
      ...(await consumeTimes(one!, "caller", 4)),
      ...(await consumeTimes(two!, "caller", 4)),
    ];
    expect(during.map((v) => v.allowed)).toEqual([
      true,
      true,
      true,
      false,
      true,
      true,
      true,
      false,
    ]);

    await redis.restart();
    await Promise.all(
      pair.map(
        (client) =>
          new Promise((r) => (client.status === "ready" ? r(null) : client.once("ready", r))),
      ),
    );
    const after = [];
    for (let i = 0; i < 3; i++) {
      after.push(await one!.consume("fresh"), await two!.consume("fresh"));
    }
    expect(after.map((v) => v.allowed)).toEqual([true, true, true, false, false, false]);
    const [key] = await redis.client().keys("rr:*");
    expect(await redis.client().get(key!)).toBe("6");
    expect(await redis.client().pttl(key!)).toBeGreaterThan(0);
  });

  it("counts locally when Redis was never reachable", async () => {
    const down = await startRedis();
    const url = down.url;
    await down.stop();
    const client = createRedisClient({ mode: "single", url }, silent);
    clients.push(client);
    const limiter = createRateLimiter({
      limit: 2,
      windowSeconds: 60,
      keyPrefix: "rn:",
      redis: client,
      logger: silent,
      now: () => T0,
    });
    const verdicts = await consumeTimes(limiter, "caller", 3);
    expect(verdicts.map((v) => v.allowed)).toEqual([true, true, false]);
  });
});
