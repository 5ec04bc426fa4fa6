import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BREAKER_FAILURES,
  guardAgainstOutages,
  type OutageGuardOptions,
} from "../../src/cache/outage-guard.js";
import { entrySuffix } from "../../src/cache/keys.js";
import { createRedisTokenStore } from "../../src/cache/redis-token-store.js";
import { createCoordinatedTokenCache } from "../../src/cache/token-cache-coordinator.js";
import type { TokenStore } from "../../src/cache/token-store.js";
import { createRedisClient, type RedisClient } from "../../src/redis/client.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";
import { waitReady } from "./behaviour.js";
import { silentLogger } from "./upstream.js";

type RedisTokenStore = ReturnType<typeof createRedisTokenStore>;

const USER = "8:acs:2dee53b4-368b-45b4-ab52-8493fb117652_00000005-14a2-493b-8a72-5a3a0d000082";
const OTHER_USER = USER.replace(/82$/, "83");
const KEY = { userId: USER, scopes: ["chat"] as const, expiresInMinutes: 60 };
const MIN_REMAINING_MS = 15 * 60_000;
const LOCK_TTL_MS = 5000;

/**
 * A miss takes the entry's lock (`begin`) before it calls ACS, so that other instances wait for its
 * token instead of minting their own; writing the token releases it. A lock whose holder will not
 * write makes every other instance's miss for the key wait for it, up to its 5 s life:
 * - a begin that timed out while Redis was paused still runs when Redis resumes, and takes the
 *   lock after the miss was answered straight from ACS;
 * - a write refused after the mint (the breaker opened meanwhile) never releases it, and the
 *   release must not be refused by that breaker too.
 * Either way the lock is released at once, on the same connection, so Redis drops it right after.
 */
describe("a lock whose holder will not write its token", () => {
  let redis: RedisProcess;
  const clients: RedisClient[] = [];

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.resume().catch(() => undefined);
    for (const client of clients) {
      client.disconnect();
    }
    await redis?.stop();
  });

  async function connect(commandTimeoutMs: number) {
    const client = createRedisClient({ mode: "single", url: redis.url }, silentLogger, {
      commandTimeoutMs,
    });
    clients.push(client);
    await waitReady(client);
    return client;
  }

  /** Two instances on one key space: `a` over `wrap(its store)`, `b` plain, counting its waits. */
  async function instances(
    wrap: (store: RedisTokenStore) => TokenStore,
    guard: Partial<OutageGuardOptions> = {},
  ) {
    const keyPrefix = `test:${randomUUID()}:`;
    const encryptionKey = randomBytes(32);
    const store = async (client: RedisClient) =>
      createRedisTokenStore({ client, keyPrefix, encryptionKey, lockTtlMs: LOCK_TTL_MS });
    // Short enough for the paused begin to time out soon, long enough for a busy machine.
    const aClient = await connect(1000);
    const aStore = await store(aClient);
    const a = createCoordinatedTokenCache(
      guardAgainstOutages(wrap(aStore), { client: aClient, logger: silentLogger, ...guard }),
      { minRemainingMs: MIN_REMAINING_MS },
    );
    const bWaits: string[] = [];
    const b = createCoordinatedTokenCache(await store(await connect(10_000)), {
      minRemainingMs: MIN_REMAINING_MS,
      onWait: (scope) => bWaits.push(scope),
    });
    let mints = 0;
    const mint = async () => ({ token: `token-${++mints}`, expiresOn: Date.now() + 60 * 60_000 });
    /**
     * Whether the entry's lock is held once Redis has run everything `a` sent: it answers a
     * connection's commands in order, so that is when a PING sent now is answered.
     */
    const lockHeld = async () => {
      let answer: string;
      do {
        // One that timed out (a busy machine) proves nothing: the next is answered later still.
        answer = await aClient.ping().catch(() => "timed out");
      } while (answer !== "PONG");
      return (await redis.client().exists(aStore.keys.lock(USER, entrySuffix(KEY)))) === 1;
    };
    return { a, b, bWaits, mint, lockHeld, keys: aStore.keys };
  }

  it("a begin that timed out during a pause: released once Redis resumes, and another instance's miss does not wait for it", async () => {
    let pauseOnBegin = false;
    const { a, b, bWaits, mint, lockHeld, keys } = await instances((store) => ({
      ...store,
      async begin(...args) {
        if (pauseOnBegin) {
          await redis.pause();
        }
        return store.begin(...args);
      },
    }));
    // Another user's miss first, as in a gateway that has been running: Redis then knows the
    // begin script, and the one sent during the pause runs (a first EVALSHA would be refused).
    await a.getOrMint({ ...KEY, userId: OTHER_USER }, mint);
    pauseOnBegin = true;
    // The begin times out (1 s) and the miss is answered straight from ACS.
    expect(await a.getOrMint(KEY, mint)).toMatchObject({
      cached: false,
      token: { token: "token-2" },
    });
    await redis.resume();

    expect(await lockHeld()).toBe(false);
    // The paused begin did run (it alone creates a new user's epoch): its lock was released.
    expect(await redis.client().exists(keys.epoch(USER))).toBe(1);
    // b's miss takes the lock itself and mints at once.
    expect(await b.getOrMint(KEY, mint)).toMatchObject({
      cached: false,
      token: { token: "token-3" },
    });
    expect(bWaits).toEqual([]);
  });

  it("a write refused because the breaker opened during the mint: released all the same, and another instance's miss does not wait for it", async () => {
    // a's clock stands still: once open, its breaker stays open for as long as the test needs.
    const frozen = Date.now();
    let opened = 0;
    let failReads = false;
    const { a, b, bWaits, mint, lockHeld } = await instances(
      (store) => ({
        ...store,
        async read(...args) {
          if (failReads) {
            throw new Error("connection reset (test)");
          }
          return store.read(...args);
        },
      }),
      { now: () => frozen, onBreakerOpen: () => opened++ },
    );
    const others = Array.from({ length: BREAKER_FAILURES }, (_, i) => ({
      ...KEY,
      userId: USER.replace(/82$/, String(90 + i)),
    }));
    const other = async () => ({ token: "other", expiresOn: Date.now() + 60 * 60_000 });
    const answer = await a.getOrMint(KEY, async () => {
      // While a holds the key's lock and calls ACS, Redis fails five other requests' reads.
      failReads = true;
      for (const key of others) {
        await a.getOrMint(key, other);
      }
      failReads = false;
      return mint();
    });
    expect(answer).toMatchObject({ cached: false, token: { token: "token-1" } });
    // The breaker opened before the write, which it refused.
    expect(opened).toBe(1);

    expect(await lockHeld()).toBe(false);
    expect(await b.getOrMint(KEY, mint)).toMatchObject({
      cached: false,
      token: { token: "token-2" },
    });
    expect(bWaits).toEqual([]);
  });
});
