import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMemoryTokenStore } from "../../src/cache/memory-token-store.js";
import { createRedisTokenStore } from "../../src/cache/redis-token-store.js";
import { createCoordinatedTokenCache } from "../../src/cache/token-cache-coordinator.js";
import type { TokenStore } from "../../src/cache/token-store.js";
import { createRedisClient, type RedisClient } from "../../src/redis/client.js";
import { redisForTest, type TestRedis } from "../helpers/redis.js";
import { waitReady } from "./behaviour.js";
import { signal, silentLogger } from "./upstream.js";

const USER = "8:acs:2dee53b4-368b-45b4-ab52-8493fb117652_00000005-14a2-493b-8a72-5a3a0d000081";
const KEY = { userId: USER, scopes: ["chat"] as const, expiresInMinutes: 60 };
const MIN_REMAINING_MS = 15 * 60_000;

/**
 * `store`, whose next `read` is held after it answered until `release` fires: the reader has seen
 * a miss, and whatever happens before the release (another flight finishing) happens between its
 * read and its next step.
 */
function holdNextRead(store: TokenStore) {
  const held = signal();
  const answered = signal();
  let armed = true;
  const wrapped: TokenStore = {
    ...store,
    async read(...args) {
      const result = await store.read(...args);
      if (armed) {
        armed = false;
        answered.fire();
        await held.promise;
      }
      return result;
    },
  };
  return { store: wrapped, readAnswered: answered.promise, release: () => held.fire() };
}

function upstream() {
  let calls = 0;
  return {
    calls: () => calls,
    mint: async () => {
      calls++;
      return { token: `token-${calls}`, expiresOn: Date.now() + 60 * 60_000 };
    },
  };
}

/**
 * The gap between a miss's read and its lock: a flight that finishes in it has written the entry
 * and released the lock, so the late request must serve that entry, not mint the same token again
 * (measured before this rule: 788 ACS calls for 782 distinct tokens in the benchmark's refresh
 * workload).
 */
describe("a miss that read before another flight finished", () => {
  it("serves the finished flight's token from the memory store, without a second upstream call", async () => {
    const { store, readAnswered, release } = holdNextRead(
      createMemoryTokenStore({ maxEntries: 100 }),
    );
    const cache = createCoordinatedTokenCache(store, { minRemainingMs: MIN_REMAINING_MS });
    const up = upstream();

    const late = cache.getOrMint(KEY, up.mint);
    await readAnswered;
    const first = await cache.getOrMint(KEY, up.mint);
    release();

    expect(first).toMatchObject({ cached: false, token: { token: "token-1" } });
    expect(await late).toMatchObject({ cached: true, token: { token: "token-1" } });
    expect(up.calls()).toBe(1);
  });

  describe("over Redis, two instances", () => {
    let redis: TestRedis;
    const clients: RedisClient[] = [];

    beforeAll(async () => {
      redis = await redisForTest();
    });
    afterAll(async () => {
      for (const client of clients) {
        client.disconnect();
      }
      await redis?.stop();
    });

    async function instance(keyPrefix: string, encryptionKey: Buffer) {
      const client = createRedisClient({ mode: "single", url: redis.url }, silentLogger);
      clients.push(client);
      await waitReady(client);
      return createRedisTokenStore({ client, keyPrefix, encryptionKey, lockTtlMs: 5000 });
    }

    it("the late instance serves the token the other wrote, without a second upstream call", async () => {
      const prefix = `test:${randomUUID()}:`;
      const encryptionKey = randomBytes(32);
      const held = holdNextRead(await instance(prefix, encryptionKey));
      const late = createCoordinatedTokenCache(held.store, { minRemainingMs: MIN_REMAINING_MS });
      const other = createCoordinatedTokenCache(await instance(prefix, encryptionKey), {
        minRemainingMs: MIN_REMAINING_MS,
      });
      const up = upstream();

      const waiting = late.getOrMint(KEY, up.mint);
      await held.readAnswered;
      const first = await other.getOrMint(KEY, up.mint);
      held.release();

      expect(first).toMatchObject({ cached: false, token: { token: "token-1" } });
      expect(await waiting).toMatchObject({ cached: true, token: { token: "token-1" } });
      expect(up.calls()).toBe(1);
    });

    it("an entry it cannot open (sealed under another key) is replaced, not served or waited on", async () => {
      const prefix = `test:${randomUUID()}:`;
      const held = holdNextRead(await instance(prefix, randomBytes(32)));
      const late = createCoordinatedTokenCache(held.store, { minRemainingMs: MIN_REMAINING_MS });
      // Another key: its entries do not open for `late` (a rotated TOKEN_CACHE_ENCRYPTION_KEY).
      const other = createCoordinatedTokenCache(await instance(prefix, randomBytes(32)), {
        minRemainingMs: MIN_REMAINING_MS,
      });
      const up = upstream();

      const waiting = late.getOrMint(KEY, up.mint);
      await held.readAnswered;
      await other.getOrMint(KEY, up.mint);
      held.release();

      expect(await waiting).toMatchObject({ cached: false, token: { token: "token-2" } });
      // Replaced under the same epoch: the late instance's own next lookup is a hit.
      expect(await late.getOrMint(KEY, up.mint)).toMatchObject({
        cached: true,
        token: { token: "token-2" },
      });
      expect(up.calls()).toBe(2);
    });
  });
});
