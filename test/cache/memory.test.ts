import { describe, expect, it } from "vitest";
import { createMemoryTokenCache } from "../../src/cache/memory-token-cache.js";
import { describeTokenCacheBehaviour, memoryBackend } from "./behaviour.js";

describeTokenCacheBehaviour("in-process memory", { shared: false }, async () => memoryBackend());

describe("the memory token cache's bound", () => {
  const USER = (n: number) => `8:acs:2dee53b4-368b-45b4-ab52-8493fb117652_user-${n}`;
  const key = (n: number) => ({ userId: USER(n), scopes: ["chat"] as const, expiresInMinutes: 60 });
  const mintCounter = () => {
    let calls = 0;
    return {
      calls: () => calls,
      mint: async () => ({ token: `opaque-${++calls}`, expiresOn: Date.now() + 60 * 60_000 }),
    };
  };

  it("holds at most maxEntries entries and evicts the least recently used first", async () => {
    const cache = createMemoryTokenCache({ maxEntries: 3, minRemainingMs: 15 * 60_000 });
    const up = mintCounter();
    for (const n of [1, 2, 3]) {
      await cache.getOrMint(key(n), up.mint);
    }
    expect((await cache.getOrMint(key(1), up.mint)).cached).toBe(true); // 1 is now the most recent
    await cache.getOrMint(key(4), up.mint); // evicts 2, the least recently used
    expect(up.calls()).toBe(4);
    expect((await cache.getOrMint(key(1), up.mint)).cached).toBe(true);
    expect((await cache.getOrMint(key(3), up.mint)).cached).toBe(true);
    expect((await cache.getOrMint(key(4), up.mint)).cached).toBe(true);
    expect((await cache.getOrMint(key(2), up.mint)).cached).toBe(false);
    expect(up.calls()).toBe(5);
    await cache.close();
  });

  it("stays bounded under many users and never revives an entry whose epoch record was evicted", async () => {
    const cache = createMemoryTokenCache({ maxEntries: 2, minRemainingMs: 15 * 60_000 });
    const up = mintCounter();
    const first = await cache.getOrMint(key(0), up.mint);
    await cache.invalidateUser(USER(0), async () => undefined);
    for (let n = 1; n < 50; n++) {
      await cache.getOrMint(key(n), up.mint);
    }
    expect((await cache.getOrMint(key(0), up.mint)).token.token).not.toBe(first.token.token);
    await cache.close();
  });

  it("counts hits and misses and leaves no timer running after close", async () => {
    const timersBefore = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const seen: string[] = [];
    const cache = createMemoryTokenCache({
      maxEntries: 10,
      minRemainingMs: 15 * 60_000,
      onLookup: (result) => seen.push(result),
    });
    const up = mintCounter();
    await cache.getOrMint(key(1), up.mint);
    await cache.getOrMint(key(1), up.mint);
    await cache.invalidateUser(USER(1), async () => undefined, { tombstone: true });
    await expect(cache.getOrMint(key(1), up.mint)).rejects.toThrow("deleted");
    expect(seen).toEqual(["miss", "hit"]);
    await cache.close();
    const timersAfter = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    expect(timersAfter).toBeLessThanOrEqual(timersBefore);
    expect(await cache.isReady()).toBe(true);
  });
});
