import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisClient, type RedisClient } from "../../src/redis/index.js";
import { createLogger } from "../../src/logger.js";
import {
  APQ_MAX_NEW_ENTRIES_PER_DAY,
  createApqCache,
} from "../../src/server/persisted-documents.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

const logger = createLogger({ level: "silent" });
const DAY = 86_400_000;

describe("the APQ store's bounds", () => {
  let redis: RedisProcess;
  let client: RedisClient;
  beforeAll(async () => {
    redis = await startRedis();
    client = createRedisClient({ mode: "single", url: redis.url }, logger);
    await new Promise<void>((resolve) => client.once("ready", () => resolve()));
  });
  afterAll(async () => {
    client?.disconnect();
    await redis?.stop();
  });

  it("does not register a text longer than the cap", async () => {
    const store = createApqCache({ redis: client, keyPrefix: "t1:", logger, maxTextBytes: 16 });
    await store.set("apq:short", "{ me { subject } }".slice(0, 16));
    await store.set("apq:long", "query Long { me { subject } }");
    expect(await store.get("apq:short")).toBe("{ me { subject }");
    expect(await store.get("apq:long")).toBeUndefined();
  });

  it("stops registering after the daily budget, shared by every instance, and starts again the next day", async () => {
    let now = Date.UTC(2026, 0, 1, 12);
    const options = { redis: client, keyPrefix: "t2:", logger, maxNewEntriesPerDay: 2 };
    const one = createApqCache({ ...options, now: () => now });
    const two = createApqCache({ ...options, now: () => now });
    await one.set("apq:a", "A");
    await two.set("apq:b", "B");
    await one.set("apq:c", "C");
    expect([await two.get("apq:a"), await one.get("apq:b"), await two.get("apq:c")]).toEqual([
      "A",
      "B",
      undefined,
    ]);
    now += DAY;
    await two.set("apq:c", "C");
    expect(await one.get("apq:c")).toBe("C");
    // Entries expire: Redis holds them for the TTL at most.
    expect(await redis.client().ttl("t2:apq:a")).toBeGreaterThan(0);
  });

  it(`counts distinct new texts only: one text registered ${APQ_MAX_NEW_ENTRIES_PER_DAY + 1} times leaves the default budget for a new text`, async () => {
    const now = () => Date.UTC(2026, 0, 2, 12);
    const store = createApqCache({ redis: client, keyPrefix: "t4:", logger, now });
    for (let i = 0; i <= APQ_MAX_NEW_ENTRIES_PER_DAY; i++) {
      await store.set("apq:same", "{ __typename }");
    }
    await store.set("apq:new", "{ me { subject } }");
    // The new text's hash alone now finds it, on any instance.
    const other = createApqCache({ redis: client, keyPrefix: "t4:", logger, now });
    expect(await other.get("apq:new")).toBe("{ me { subject } }");
  });

  it("charges concurrent and cross-instance registrations of one text once, and a refused text never", async () => {
    let now = Date.UTC(2026, 0, 3, 12);
    const options = { redis: client, keyPrefix: "t5:", logger, maxNewEntriesPerDay: 2 };
    const one = createApqCache({ ...options, now: () => now });
    const two = createApqCache({ ...options, now: () => now });
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? one : two).set("apq:a", "A")));
    // Gone from Redis (evicted) but registered today: stored again for free.
    await redis.client().del("t5:apq:a");
    await two.set("apq:a", "A");
    await one.set("apq:b", "B");
    for (let i = 0; i < 5; i++) {
      await two.set("apq:c", "C"); // over the budget: refused each time, costs nothing
    }
    expect([await one.get("apq:a"), await two.get("apq:b"), await one.get("apq:c")]).toEqual([
      "A",
      "B",
      undefined,
    ]);
    now += DAY;
    await one.set("apq:c", "C");
    expect(await two.get("apq:c")).toBe("C");
  });

  it("answers a miss and drops writes while Redis is unreachable, without failing", async () => {
    const down = createRedisClient({ mode: "single", url: "redis://127.0.0.1:1" }, logger);
    try {
      const store = createApqCache({ redis: down, keyPrefix: "t3:", logger });
      await expect(store.set("apq:x", "X")).resolves.toBeUndefined();
      await expect(store.get("apq:x")).resolves.toBeUndefined();
    } finally {
      down.disconnect();
    }
  });

  it("keeps a bounded in-process store without Redis", async () => {
    const store = createApqCache({ redis: undefined, keyPrefix: "", logger, maxTextBytes: 8 });
    await store.set("apq:a", "{ me }");
    await store.set("apq:b", "{ me { subject } }");
    expect(await store.get("apq:a")).toBe("{ me }");
    expect(await store.get("apq:b")).toBeUndefined();
  });
});
