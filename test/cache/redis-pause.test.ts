import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TokenCache, TokenCacheKey } from "../../src/cache/token-cache.js";
import type { IssuedToken } from "../../src/identity/identity-provider.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";
import { redisBackend, type CacheBackend } from "./behaviour.js";
import { eventually, startUpstream, type Upstream } from "./upstream.js";

const ROUNDS = 10;

/**
 * The revocation promise (docs/caching.md, "Revocation and deletion: what is guaranteed"): a revoke
 * that answered confirmed leaves no instance able to serve a token minted before it, through Redis
 * pauses, and a revoke that could not be recorded says so instead of answering OK.
 *
 * The ledger: every mint notes how many revokes ACS had completed when the mint began. A token
 * served to a request that began after revoke k was confirmed must come from a mint that began
 * after ACS completed revoke k; anything older may have been minted before the revoke.
 */
describe("the revocation promise while Redis pauses under load", () => {
  let upstream: Upstream;
  let server: RedisProcess;
  let backend: CacheBackend;

  beforeAll(async () => {
    // Throttling off: while Redis is paused every request goes to ACS, far above its quota. ACS
    // takes tens of milliseconds to answer; an emulator answering at once let the eight loops
    // below mint (sign) thousands of tokens per pause, a core's worth of CPU for the whole file,
    // taken from every other test running beside it. 20 ms keeps mints in flight across revokes,
    // which is what the ledger checks, at a quarter of that CPU.
    [upstream, server] = await Promise.all([
      startUpstream({ throttle: "off", latencyMs: 20 }),
      startRedis(),
    ]);
    backend = redisBackend({ mode: "single", url: server.url }, () => [server.client()]);
  });

  afterAll(async () => {
    await server?.resume().catch(() => undefined);
    await backend?.stop();
    await server?.stop();
    await upstream?.close();
  });

  it(`never serves a pre-revoke token after a confirmed revoke, on either instance, across ${ROUNDS} pauses; a revoke during a pause answers unconfirmed`, async () => {
    // a's clock can be held still, so its breaker stays open as long as the scenario needs.
    let frozenAt: number | undefined;
    const a = await backend.instance(upstream, { now: () => frozenAt ?? Date.now() });
    const b = await backend.instance(upstream);
    const user = await upstream.createUser();
    const keys = [upstream.key(user, ["chat"], 60), upstream.key(user, ["voip"], 90)];

    let acsRevokes = 0;
    let confirmed = 0;
    /**
     * token -> revokes ACS had completed when a mint that returned it began. Two mints in one
     * second return the same text; the emulator dates a token issued after a revoke past the
     * revoke's second, so one text is never both pre- and post-revoke: keep the largest.
     */
    const ledger = new Map<string, number>();
    const mint = (key: TokenCacheKey) => {
      const call = upstream.mint(key);
      return async (): Promise<IssuedToken> => {
        const since = acsRevokes;
        const token = await call();
        ledger.set(token.token, Math.max(since, ledger.get(token.token) ?? since));
        return token;
      };
    };
    const revoke = async (cache: TokenCache) => {
      const answer = await cache.invalidateUser(user, async () => {
        await upstream.revoke(user);
        acsRevokes += 1;
        return acsRevokes;
      });
      if (answer.confirmed) {
        confirmed = Math.max(confirmed, answer.value);
      }
      return answer;
    };

    const violations: string[] = [];
    const stats = new Map<TokenCache, { done: number; hits: number; afterConfirm: number }>([
      [a, { done: 0, hits: 0, afterConfirm: 0 }],
      [b, { done: 0, hits: 0, afterConfirm: 0 }],
    ]);
    let hitsAfterConfirm = 0;
    let running = true;
    const loop = async (cache: TokenCache, key: TokenCacheKey) => {
      const mine = stats.get(cache)!;
      while (running) {
        const mustFollow = confirmed;
        const result = await cache.getOrMint(key, mint(key));
        const since = ledger.get(result.token.token);
        if (since === undefined || since < mustFollow) {
          violations.push(
            `${cache === a ? "a" : "b"} served a token minted after ${since} revokes to a request begun after revoke ${mustFollow} was confirmed (cached: ${result.cached})`,
          );
        }
        mine.done += 1;
        if (result.cached) {
          mine.hits += 1;
        }
        if (mustFollow > 0) {
          mine.afterConfirm += 1;
          if (result.cached) {
            hitsAfterConfirm += 1;
          }
        }
      }
    };
    const loops = [a, b].flatMap((cache) =>
      keys.flatMap((key) => [loop(cache, key), loop(cache, key)]),
    );

    const unconfirmedDuringPause: boolean[] = [];
    const confirmedAfterResume: number[] = [];
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const before = { a: { ...stats.get(a)! }, b: { ...stats.get(b)! } };
        await eventually(
          () => stats.get(a)!.hits > before.a.hits && stats.get(b)!.hits > before.b.hits,
          "both instances to serve from Redis",
        );

        await server.pause();
        const paused = { a: stats.get(a)!.done, b: stats.get(b)!.done };
        // Both instances have been answering without Redis for a while (timeouts, then the
        // breaker open), as in the reported 8 s pause.
        await eventually(
          // 10 each: twice the breaker's threshold of failures in a row.
          () => stats.get(a)!.done - paused.a >= 10 && stats.get(b)!.done - paused.b >= 10,
          "both instances to carry on without Redis",
        );
        const during = await revoke(a);
        unconfirmedDuringPause.push(during.confirmed === false);
        // The revoke's own timeouts (re)opened a's breaker; it stays open until the clock moves.
        frozenAt = Date.now();

        const hitsAtResume = stats.get(b)!.hits;
        await server.resume();
        // b is back (serving from Redis again) while a still has its breaker open from the pause
        // (its clock is held). Even rounds: the reported order, a revokes (its invalidation tries
        // Redis anyway). Odd rounds: b revokes while a still answers without Redis (a must not
        // hand out a flight begun before the revoke). A retry, as a client would after
        // REVOCATION_UNCONFIRMED, is allowed while Redis drains its backlog.
        await eventually(() => stats.get(b)!.hits > hitsAtResume, "b to serve from Redis again");
        const revoker = round % 2 === 0 ? a : b;
        let after = await revoke(revoker);
        for (let retry = 0; !after.confirmed && retry < 10; retry++) {
          after = await revoke(revoker);
        }
        frozenAt = undefined;
        expect(after.confirmed).toBe(true);
        confirmedAfterResume.push(after.value);

        const resumed = { a: stats.get(a)!.afterConfirm, b: stats.get(b)!.afterConfirm };
        await eventually(
          () =>
            stats.get(a)!.afterConfirm - resumed.a >= 25 &&
            stats.get(b)!.afterConfirm - resumed.b >= 25,
          "both instances to serve requests begun after the confirmed revoke",
        );
      }
    } finally {
      running = false;
      await server.resume().catch(() => undefined);
      await Promise.all(loops);
    }

    expect(violations.slice(0, 5)).toEqual([]);
    expect(unconfirmedDuringPause).toEqual(Array.from({ length: ROUNDS }, () => true));
    expect(confirmedAfterResume).toHaveLength(ROUNDS);
    // The cache was really in use after the revokes: post-revoke entries were served from Redis.
    expect(hitsAfterConfirm).toBeGreaterThan(0);
    // And ACS agrees: the newest token served is active, a token from before the last revoke is not.
    const newest = await a.getOrMint(keys[0]!, mint(keys[0]!));
    expect(await upstream.isActive(newest.token.token)).toBe(true);
    const stale = [...ledger].find(([, since]) => since < acsRevokes)?.[0];
    expect(stale && (await upstream.isActive(stale))).toBe(false);
  }, 180_000);
});
