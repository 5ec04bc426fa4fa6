import { EventEmitter } from "node:events";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { guardAgainstOutages } from "../../src/cache/outage-guard.js";
import type { EntryRead, TokenStore } from "../../src/cache/token-store.js";
import { createLogger } from "../../src/logger.js";
import type { RedisClient } from "../../src/redis/client.js";

/**
 * The outage guard's fence against a scripted connection and store, for orders of events a real
 * Redis does not let a test pick: a connection lost again while the journal is being replayed.
 * (The guard under real outages: redis-outage, redis-pause and the Cluster tests.)
 */
function scripted() {
  const client = Object.assign(new EventEmitter(), {
    status: "ready",
    /** Redis TIME answers, in ms: each call takes the next. */
    times: [] as number[],
    async time(): Promise<[string, string]> {
      const ms = client.times.shift()!;
      return [String(Math.floor(ms / 1000)), String((ms % 1000) * 1000)];
    },
  });
  let entryBeganAtMs = 0;
  /** Invalidations the store has been asked for and not yet answered. */
  const invalidations: { userId: string; answer(error?: Error): void }[] = [];
  const store: TokenStore = {
    async read(): Promise<EntryRead> {
      return {
        epoch: "1",
        deleted: false,
        entry: { token: { token: "cached", expiresOn: 0 }, beganAtMs: entryBeganAtMs },
        lockedByOther: false,
      };
    },
    begin: async () => ({ epoch: "1", locked: true, beganAtMs: 0, written: false }),
    write: async () => true,
    release: async () => {},
    invalidate: (userId) =>
      new Promise<void>((resolve, reject) =>
        invalidations.push({ userId, answer: (error) => (error ? reject(error) : resolve()) }),
      ),
    isDeleted: async () => false,
    isReady: async () => true,
    close: async () => {},
  };
  const guarded = guardAgainstOutages(store, {
    client: client as unknown as RedisClient,
    logger: createLogger({ level: "silent" }),
  });
  const drop = () => {
    client.status = "reconnecting";
    client.emit("close");
  };
  const reconnect = () => {
    client.status = "ready";
    client.emit("ready");
  };
  return {
    client,
    guarded,
    invalidations,
    drop,
    reconnect,
    cacheEntryBegunAt: (ms: number) => (entryBeganAtMs = ms),
  };
}

describe("the outage guard's fence", () => {
  // The guard's replay timer (every 500 ms) runs only when a test says so; setImmediate is real.
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("is still set after a round of the replay timer that found no fence due", async () => {
    const redis = scripted();
    const revoke = redis.guarded.invalidate("revoked-user", false);
    redis.invalidations.shift()!.answer(new Error("Connection is closed."));
    await expect(revoke).rejects.toThrow();
    // The timer's round: no fence due, the journal replayed (and answered).
    await vi.advanceTimersByTimeAsync(500);
    await expect.poll(() => redis.invalidations.length).toBe(1);
    redis.invalidations.shift()!.answer();

    redis.drop();
    redis.client.times.push(2_000_000);
    redis.reconnect();
    redis.cacheEntryBegunAt(1_500_000);
    expect((await redis.guarded.read("someone-else", "chat:60")).entry).toBeUndefined();
    redis.cacheEntryBegunAt(2_000_001);
    expect((await redis.guarded.read("someone-else", "chat:60")).entry).toBeDefined();
  });

  it("is set again for a connection lost during a replay, and a read waits for the fence, not the replay", async () => {
    const redis = scripted();
    // A revoke Redis did not record: journaled, its invalidation replayed once Redis is back.
    const revoke = redis.guarded.invalidate("revoked-user", false);
    redis.invalidations.shift()!.answer(new Error("Connection is closed."));
    await expect(revoke).rejects.toThrow();

    redis.drop();
    redis.client.times.push(1_000_000);
    redis.reconnect();
    // The fence is at 1,000,000; the replay has begun and hangs (Redis slow to answer it).
    await expect.poll(() => redis.invalidations.length).toBe(1);

    // The connection is lost again, and comes back, while the replay still waits.
    redis.drop();
    redis.client.times.push(2_000_000);
    redis.reconnect();

    // An entry begun between the two losses: after the first fence, before the second.
    redis.cacheEntryBegunAt(1_500_000);
    const reading = redis.guarded.read("someone-else", "chat:60");
    // Redis answers within the scripted calls: the read settles within this turn of the loop, or
    // it is waiting for the replay.
    const settled = await Promise.race([
      reading.then(() => "read"),
      new Promise((resolve) => setImmediate(() => resolve("waiting for the replay"))),
    ]);
    redis.invalidations.shift()!.answer();
    expect(settled).toBe("read");
    expect((await reading).entry).toBeUndefined();
    // One begun after the second fence is served.
    redis.cacheEntryBegunAt(2_000_001);
    expect((await redis.guarded.read("someone-else", "chat:60")).entry?.token.token).toBe("cached");
  });
});
