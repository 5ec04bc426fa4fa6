import { describe, expect, it } from "vitest";
import { createMemoryTokenStore } from "../../src/cache/memory-token-store.js";
import { createCoordinatedTokenCache } from "../../src/cache/token-cache-coordinator.js";
import type { TokenStore } from "../../src/cache/token-store.js";
import { signal } from "./upstream.js";

const USER = "8:acs:2dee53b4-368b-45b4-ab52-8493fb117652_00000005-14a2-493b-8a72-5a3a0d000081";
const KEY = { userId: USER, scopes: ["chat"] as const, expiresInMinutes: 60 };

/** The memory store, with a switch that makes chosen operations throw as an unreachable Redis would. */
function switchableStore() {
  const inner = createMemoryTokenStore({ maxEntries: 100 });
  const failing = new Set<keyof TokenStore>();
  const calls: string[] = [];
  const wrap =
    <K extends keyof TokenStore>(name: K) =>
    async (...args: any[]) => {
      calls.push(name);
      if (failing.has(name)) {
        throw new Error(`${name}: redis unreachable (test)`);
      }
      return (inner[name] as any)(...args);
    };
  const store: TokenStore = {
    read: wrap("read"),
    begin: wrap("begin"),
    write: wrap("write"),
    release: wrap("release"),
    invalidate: wrap("invalidate"),
    isDeleted: wrap("isDeleted"),
    isReady: wrap("isReady"),
    close: wrap("close"),
  };
  return { store, failing, calls };
}

function minting() {
  let n = 0;
  return {
    count: () => n,
    mint: (gate?: Promise<unknown>) => async () => {
      const mine = ++n;
      await gate;
      return { token: `token-${mine}`, expiresOn: Date.now() + 60 * 60_000 };
    },
  };
}

describe("the cache coordinator over a store", () => {
  it("merges concurrent misses into one upstream call while the store answers", async () => {
    const { store } = switchableStore();
    const cache = createCoordinatedTokenCache(store, { minRemainingMs: 15 * 60_000 });
    const up = minting();
    const gate = signal();
    const results = Promise.all([1, 2, 3].map(() => cache.getOrMint(KEY, up.mint(gate.promise))));
    gate.fire();
    expect(new Set((await results).map((r) => r.token.token)).size).toBe(1);
    expect(up.count()).toBe(1);
  });

  it("when the store cannot be read, each request calls upstream itself and joins no flight", async () => {
    const { store, failing } = switchableStore();
    const cache = createCoordinatedTokenCache(store, { minRemainingMs: 15 * 60_000 });
    failing.add("read");
    const up = minting();
    const gate = signal();
    const results = Promise.all([1, 2, 3].map(() => cache.getOrMint(KEY, up.mint(gate.promise))));
    gate.fire();
    const tokens = (await results).map((r) => r.token.token);
    // Joining a flight begun earlier could hand out a token minted before another instance's
    // revoke, which this instance cannot see without the store.
    expect(new Set(tokens).size).toBe(3);
    expect(up.count()).toBe(3);
    expect((await results).every((r) => !r.cached)).toBe(true);
  });

  it("confirms an invalidation only when both sides of the bracket were recorded", async () => {
    const { store, failing, calls } = switchableStore();
    const cache = createCoordinatedTokenCache(store, { minRemainingMs: 15 * 60_000 });
    expect(await cache.invalidateUser(USER, async () => "ok")).toEqual({
      value: "ok",
      confirmed: true,
    });

    failing.add("invalidate");
    let upstreamRan = false;
    const unrecorded = await cache.invalidateUser(USER, async () => {
      upstreamRan = true;
      return 42;
    });
    expect(unrecorded).toEqual({ value: 42, confirmed: false });
    expect(upstreamRan).toBe(true);

    // Only the second side failing is unconfirmed too.
    failing.delete("invalidate");
    const half = await cache.invalidateUser(USER, async () => {
      failing.add("invalidate");
      return "x";
    });
    expect(half.confirmed).toBe(false);
    failing.delete("invalidate");

    // A failing upstream call rethrows, after the second side ran.
    calls.length = 0;
    await expect(
      cache.invalidateUser(USER, () => Promise.reject(new Error("ACS down"))),
    ).rejects.toThrow("ACS down");
    expect(calls.filter((c) => c === "invalidate")).toHaveLength(2);
  });

  it("drops what was cached at the first side of the bracket, before upstream runs", async () => {
    const { store } = switchableStore();
    const cache = createCoordinatedTokenCache(store, { minRemainingMs: 15 * 60_000 });
    const up = minting();
    const old = await cache.getOrMint(KEY, up.mint());
    await cache.invalidateUser(USER, async () => {
      const during = await cache.getOrMint(KEY, up.mint());
      expect(during.token.token).not.toBe(old.token.token);
    });
  });
});
