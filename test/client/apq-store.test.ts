import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createRedisClient, type RedisClient } from "../../src/redis/index.js";
import { createLogger } from "../../src/logger.js";
import {
  APQ_MAX_NEW_ENTRIES_PER_DAY,
  APQ_MEMO_MS,
  createApqCache,
  TRUSTED_DOCUMENTS_MANIFEST,
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

  /**
   * Redis's clock, moved by `ms`: every key of `prefix` loses `ms` of its TTL, and one with no more
   * left is gone, as if that much time had passed (the store's own clock is `now`).
   */
  async function age(prefix: string, ms: number): Promise<void> {
    const raw = redis.client();
    for (const key of await raw.keys(`${prefix}*`)) {
      const left = await raw.pttl(key);
      if (left <= ms) {
        await raw.del(key);
      } else {
        await raw.pexpire(key, left - ms);
      }
    }
  }

  it("never extends an entry's life when its text is sent again", async () => {
    const now = () => Date.UTC(2026, 0, 4, 12);
    const store = createApqCache({ redis: client, keyPrefix: "t6:", logger, now });
    await store.set("apq:a", "A", { ttl: 86_400 });
    // 23 hours later (Redis's clock): an hour left.
    await redis.client().pexpire("t6:apq:a", 3_600_000);
    const before = await redis.client().pttl("t6:apq:a");
    await store.set("apq:a", "A", { ttl: 86_400 });
    await store.set("apq:a", "A");
    const after = await redis.client().pttl("t6:apq:a");
    expect(before).toBeGreaterThan(0);
    expect(after).toBeGreaterThan(0);
    expect(after).toBeLessThanOrEqual(before);
    expect(await store.get("apq:a")).toBe("A");
  });

  it("registers a text whose entry expired as a new text: it costs that day's budget again", async () => {
    let now = Date.UTC(2026, 0, 5, 12);
    const store = createApqCache({
      redis: client,
      keyPrefix: "t7:",
      logger,
      maxNewEntriesPerDay: 1,
      now: () => now,
    });
    await store.set("apq:a", "A");
    now += DAY;
    await age("t7:", DAY);
    expect(await store.get("apq:a")).toBeUndefined();
    await store.set("apq:a", "A"); // expired: registered anew, today's one registration
    await store.set("apq:b", "B"); // over today's budget
    expect([await store.get("apq:a"), await store.get("apq:b")]).toEqual(["A", undefined]);
    expect(await redis.client().smembers(`t7:registered:${Math.floor(now / DAY)}`)).toEqual([
      "apq:a",
    ]);
  });

  it("keeps what one caller can make Redis hold bounded, day after day, however often it resends its texts", async () => {
    const budget = 2;
    const step = DAY / 2;
    // From noon: texts registered late one UTC day and early the next are live together.
    let now = Date.UTC(2026, 0, 6, 12);
    const store = createApqCache({
      redis: client,
      keyPrefix: "t8:",
      logger,
      maxNewEntriesPerDay: budget,
      now: () => now,
    });
    const sent: string[] = [];
    const live: number[] = [];
    for (let i = 0; i < 10; i++) {
      // Every 12 hours for 5 days: each text sent so far once more, and a day's budget of new ones.
      sent.push(`apq:${i}a`, `apq:${i}b`);
      for (const key of sent) {
        await store.set(key, `{ t${key.slice(4)}: __typename }`, { ttl: 86_400 });
      }
      live.push((await redis.client().keys("t8:apq:*")).length);
      now += step;
      await age("t8:", step);
    }
    // Only what was registered in the last 24 hours is live: at most two UTC days' budgets (the
    // 4 at the first midnight: noon's texts and the new day's), then one day's budget, day after
    // day. Refreshing the texts on every resend would keep them all (2, 4, 4, 6, 6, 8, ...).
    expect(live).toEqual([2, 4, 2, 2, 2, 2, 2, 2, 2, 2]);
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

  it("asks Redis once for a text sent again and again, and again after APQ_MEMO_MS", async () => {
    let now = Date.UTC(2026, 0, 8, 12);
    const store = createApqCache({ redis: client, keyPrefix: "t9:", logger, now: () => now });
    const other = createApqCache({ redis: client, keyPrefix: "t9:", logger, now: () => now });
    await other.set("apq:a", "A"); // another instance registered it
    const sent = [vi.spyOn(client, "get"), vi.spyOn(client, "exists"), vi.spyOn(client, "multi")];
    const commands = () => sent.reduce((n, spy) => n + spy.mock.calls.length, 0);
    try {
      expect(await store.get("apq:a")).toBe("A"); // a hash alone: read from Redis once
      for (let i = 0; i < 5; i++) {
        expect(await store.get("apq:a")).toBe("A");
        await store.set("apq:a", "A", { ttl: 86_400 }); // text and hash: nothing to register
      }
      expect(commands()).toBe(1);
      now += APQ_MEMO_MS;
      await store.set("apq:a", "A");
      expect(commands()).toBe(2); // the memo ended: Redis is asked whether it still holds it
    } finally {
      sent.forEach((spy) => spy.mockRestore());
    }
  });

  it("knows the client package's documents by id without Redis, and registers none of them", async () => {
    const store = createApqCache({ redis: client, keyPrefix: "t10:", logger });
    const sent = vi.spyOn(client, "sendCommand");
    try {
      for (const { id, body } of TRUSTED_DOCUMENTS_MANIFEST.operations) {
        expect(await store.get(`apq:${id}`)).toBe(body);
        await store.set(`apq:${id}`, body);
      }
      expect(sent).not.toHaveBeenCalled();
    } finally {
      sent.mockRestore();
    }
    expect(await redis.client().keys("t10:*")).toEqual([]);
  });
});
