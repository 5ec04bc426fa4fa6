import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { TokenCache } from "../../src/cache/token-cache.js";
import { UserDeletedError } from "../../src/cache/token-cache.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";
import { startRedisProxy, type RedisProxy } from "../helpers/redis-proxy.js";
import { HEALTHY_REDIS_TIMEOUT_MS, redisBackend, type CacheBackend } from "./behaviour.js";
import { signal, eventually as until, startUpstream, type Upstream } from "./upstream.js";

describe("the Redis token cache when Redis fails", () => {
  let upstream: Upstream;
  let server: RedisProcess;
  let backend: CacheBackend;
  /** With the gateway's own command timeout: for the test of what a paused Redis costs. */
  let timed: CacheBackend;

  beforeAll(async () => {
    // appendfsync always: a SIGKILL loses nothing, so a restart is a connection-only outage.
    [upstream, server] = await Promise.all([
      startUpstream(),
      startRedis({ appendOnly: true, args: ["--appendfsync", "always"] }),
    ]);
    // A killed Redis fails every command at once (no offline queue), a live one answers: its
    // timeout is only met when the machine is busy, and a read that timed out is a miss these
    // tests would count.
    backend = redisBackend({ mode: "single", url: server.url }, () => [server.client()], {
      commandTimeoutMs: HEALTHY_REDIS_TIMEOUT_MS,
    });
    timed = redisBackend({ mode: "single", url: server.url }, () => [server.client()]);
  });

  afterAll(async () => {
    await backend?.stop();
    await timed?.stop();
    await server?.stop();
    await upstream?.close();
  });

  it("keeps answering from ACS while Redis is down, and caches again once it is back", async () => {
    const a = await backend.instance(upstream);
    const user = await upstream.createUser();
    const key = upstream.key(user, ["chat"], 60);
    await a.getOrMint(key, upstream.mint(key));
    expect((await a.getOrMint(key, upstream.mint(key))).cached).toBe(true);

    await server.kill();
    const before = upstream.issued();
    // No offline queue: with the connection gone, every command fails at once (a hang would
    // show as the test's timeout, not as a measured duration).
    for (let i = 0; i < 10; i++) {
      expect((await a.getOrMint(key, upstream.mint(key))).cached).toBe(false);
    }
    expect(upstream.issued() - before).toBe(10);
    expect(await a.isReady()).toBe(false);

    await server.restart();
    await until(() => a.isReady(), "the cache to see Redis again");
    // The entry from before the outage survived, but this instance lost its connection: it
    // re-mints once (the fence), then serves from Redis again.
    expect((await a.getOrMint(key, upstream.mint(key))).cached).toBe(false);
    expect((await a.getOrMint(key, upstream.mint(key))).cached).toBe(true);
  });

  it("a paused Redis costs each request one command timeout until the breaker opens; then no command is sent, yet a revoke still tries Redis and confirms once it answers", async () => {
    // a's clock is held still while Redis is paused, so its breaker, once open, stays open
    // however long the steps below take (no wall-clock window to fit in).
    let frozenAt: number | undefined;
    const a = await timed.instance(upstream, { now: () => frozenAt ?? Date.now() });
    const b = await timed.instance(upstream);
    // Both of a's connections: the shared one (reads, writes) and the revoke connection
    // (invalidations: `createRevokeConnection`), each watched on its own.
    const [client, revoke, ...others] = timed.connectionsOf!(a);
    expect(client).toBe(timed.clientOf!(a));
    expect(revoke).toBeDefined();
    expect(others).toEqual([]);
    const user = await upstream.createUser();
    const key = upstream.key(user, ["voip"], 60);
    const old = await a.getOrMint(key, upstream.mint(key));
    // The breaker counts failures in a row. On a busy machine a command before the pause may
    // time out (250 ms), which would count towards the five below: a hit first, a success that
    // resets the count (it also shows the entry landed).
    await until(
      async () => (await a.getOrMint(key, upstream.mint(key))).cached,
      "a hit before the pause",
    );
    const reads = vi.spyOn(client!, "sendCommand");
    const revokes = vi.spyOn(revoke!, "sendCommand");
    const sent = () => ({ reads: reads.mock.calls.length, revokes: revokes.mock.calls.length });
    try {
      await server.pause();
      frozenAt = Date.now();
      for (let i = 0; i < 5; i++) {
        const before = sent();
        expect((await a.getOrMint(key, upstream.mint(key))).cached).toBe(false);
        // Tried Redis on the shared connection (and timed out).
        expect(sent().reads).toBeGreaterThan(before.reads);
        expect(sent().revokes).toBe(before.revokes);
      }
      // Five timeouts in a row opened the breaker: reads skip Redis entirely.
      const open = sent();
      expect((await a.getOrMint(key, upstream.mint(key))).cached).toBe(false);
      expect(sent()).toEqual(open);

      // An invalidation is never skipped for the breaker: it tries Redis on the revoke connection
      // (and times out), while the shared one stays quiet (the journal's replay waits for the
      // breaker, which the held clock keeps open)...
      const paused = await a.invalidateUser(user, () => upstream.revoke(user));
      expect(paused.confirmed).toBe(false);
      expect(sent().revokes).toBeGreaterThan(open.revokes);
      expect(sent().reads).toBe(open.reads);
      expect(await upstream.isActive(old.token.token)).toBe(false);

      // ...and, with the breaker still open, confirms as soon as Redis answers again.
      await server.resume();
      const beforeResumed = sent();
      const resumed = await a.invalidateUser(user, () => upstream.revoke(user));
      expect(resumed.confirmed).toBe(true);
      expect(sent().revokes).toBeGreaterThan(beforeResumed.revokes);
    } finally {
      reads.mockRestore();
      revokes.mockRestore();
      frozenAt = undefined;
      await server.resume().catch(() => undefined);
    }
    const fresh = await b.getOrMint(key, upstream.mint(key));
    expect(fresh.token.token).not.toBe(old.token.token);
    expect(await upstream.isActive(fresh.token.token)).toBe(true);
    await until(async () => (await a.getOrMint(key, upstream.mint(key))).cached, "hits to resume");
  });

  it("a revoke or delete while Redis is down reaches ACS, and once Redis is back with its data no instance serves a stale token", async () => {
    const a = await backend.instance(upstream);
    const b = await backend.instance(upstream);
    const c = await backend.instance(upstream);
    const [u1, u2, u3] = await Promise.all([
      upstream.createUser(),
      upstream.createUser(),
      upstream.createUser(),
    ]);
    const k1 = upstream.key(u1, ["chat"], 60);
    const k2 = upstream.key(u2, ["chat"], 60);
    const k3 = upstream.key(u3, ["chat"], 60);
    const old1 = await a.getOrMint(k1, upstream.mint(k1));
    const old2 = await c.getOrMint(k2, upstream.mint(k2));
    await a.getOrMint(k3, upstream.mint(k3));
    expect((await b.getOrMint(k1, upstream.mint(k1))).cached).toBe(true);
    expect((await b.getOrMint(k2, upstream.mint(k2))).cached).toBe(true);

    await server.kill();
    // ACS takes each change, but none is confirmed: nothing could be recorded in Redis.
    const answers = [
      await a.invalidateUser(u1, () => upstream.revoke(u1)),
      await c.invalidateUser(u2, () => upstream.revoke(u2)),
      await a.invalidateUser(u3, () => upstream.deleteUser(u3), { tombstone: true }),
    ];
    expect(answers.map((r) => r.confirmed)).toEqual([false, false, false]);
    expect(await upstream.isActive(old1.token.token)).toBe(false);
    expect(await upstream.isActive(old2.token.token)).toBe(false);
    // The revoking instance knows of the delete without Redis.
    await expect(a.getOrMint(k3, upstream.mint(k3))).rejects.toBeInstanceOf(UserDeletedError);
    expect(await a.isDeleted(u3)).toBe(true);
    // Instance c dies before Redis returns: its pending invalidation of u2 is lost with it.
    await c.close();

    await server.restart();
    await until(
      async () => (await a.isReady()) && (await b.isReady()),
      "both instances to reconnect",
    );
    // Only the connection was lost: the stale entries are still in Redis...
    const keys = backend.keys!(upstream);
    const raw = server.client();
    expect(await raw.exists(keys.entry(u2, "chat:60"))).toBe(1);

    // ...but neither the revoking instance nor the other one serves them.
    for (const cache of [a, b] as TokenCache[]) {
      for (const [key, old] of [
        [k1, old1],
        [k2, old2],
      ] as const) {
        const served = await cache.getOrMint(key, upstream.mint(key));
        expect(served.token.token).not.toBe(old.token.token);
        expect(await upstream.isActive(served.token.token)).toBe(true);
      }
    }
    // The journaled delete is replayed into Redis: every instance now knows the tombstone.
    await until(() => b.isDeleted(u3), "the replayed tombstone");
    await expect(b.getOrMint(k3, upstream.mint(k3))).rejects.toBeInstanceOf(UserDeletedError);
  });

  it("after Redis lost its data, entries and epochs are gone together and nothing stale is served", async () => {
    const volatile = await startRedis({ appendOnly: false });
    const lost = redisBackend({ mode: "single", url: volatile.url }, () => [volatile.client()], {
      commandTimeoutMs: HEALTHY_REDIS_TIMEOUT_MS,
    });
    try {
      const a = await lost.instance(upstream);
      const b = await lost.instance(upstream);
      const user = await upstream.createUser();
      const key = upstream.key(user, ["voip"], 60);
      const old = await a.getOrMint(key, upstream.mint(key));
      await volatile.kill();
      expect((await b.invalidateUser(user, () => upstream.revoke(user))).confirmed).toBe(false);
      await volatile.restart();
      await until(
        async () => (await a.isReady()) && (await b.isReady()),
        "both instances to reconnect",
      );
      // b replays its journaled revoke once reconnected: a fresh epoch for the user. Redis lost
      // every key, and nothing else touches this user, so its epoch key appears only then. A token
      // minted before the replay would rightly be dropped by it (b would then miss, not hit).
      const epochKey = lost.keys!(upstream).epoch(user);
      await until(
        async () => (await volatile.client().exists(epochKey)) === 1,
        "b's journaled revoke to be recorded",
      );
      const served = await a.getOrMint(key, upstream.mint(key));
      expect(served.token.token).not.toBe(old.token.token);
      expect(await upstream.isActive(served.token.token)).toBe(true);
      expect((await b.getOrMint(key, upstream.mint(key))).cached).toBe(true);
    } finally {
      await lost.stop();
      await volatile.stop();
    }
  });
});

describe("the Redis token cache when Redis loses its data during a mint", () => {
  let upstream: Upstream;
  let volatile: RedisProcess;
  let backend: CacheBackend;

  beforeAll(async () => {
    [upstream, volatile] = await Promise.all([startUpstream(), startRedis({ appendOnly: false })]);
    backend = redisBackend({ mode: "single", url: volatile.url }, () => [volatile.client()], {
      commandTimeoutMs: HEALTHY_REDIS_TIMEOUT_MS,
    });
  });

  afterAll(async () => {
    await backend?.stop();
    await volatile?.stop();
    await upstream?.close();
  });

  it("a request after a confirmed revoke never joins a mint begun before it, though the epoch it reads is the same again", async () => {
    const cache = await backend.instance(upstream);
    // A user with no epoch in Redis yet: the first read finds none ("").
    const user = await upstream.createUser();
    const key = upstream.key(user, ["chat"], 60);
    // A mint that gets its token from ACS at once, then answers slowly.
    const minted = signal<void>();
    const answer = signal<void>();
    const mint = upstream.mint(key);
    const slow = async () => {
      const token = await mint();
      minted.fire();
      await answer.promise;
      return token;
    };
    const first = cache.getOrMint(key, slow);
    await minted.promise;

    expect((await cache.invalidateUser(user, () => upstream.revoke(user))).confirmed).toBe(true);
    // Redis loses everything (a restart without persistence, an eviction): the user's epoch reads
    // "" again, as it did when the slow mint began.
    await volatile.client().flushall();

    const after = cache.getOrMint(key, upstream.mint(key));
    answer.fire();
    const [before, served] = await Promise.all([first, after]);
    expect(served.token.token).not.toBe(before.token.token);
    expect(await upstream.isActive(served.token.token)).toBe(true);
  });
});

describe("the Redis token cache under a partition of one instance", () => {
  let upstream: Upstream;
  let server: RedisProcess;
  let proxy: RedisProxy;

  beforeAll(async () => {
    [upstream, server] = await Promise.all([startUpstream(), startRedis()]);
    proxy = await startRedisProxy(server.port);
  });

  afterAll(async () => {
    await proxy?.stop();
    await server?.stop();
    await upstream?.close();
  });

  it("replays a revoke journaled during the partition as soon as the revoking instance reconnects", async () => {
    // A cut proxy resets its connections and refuses new ones: commands fail at once.
    const healthy = { commandTimeoutMs: HEALTHY_REDIS_TIMEOUT_MS };
    const direct = redisBackend(
      { mode: "single", url: server.url },
      () => [server.client()],
      healthy,
    );
    const viaProxy = redisBackend(
      { mode: "single", url: proxy.url },
      () => [server.client()],
      healthy,
    );
    try {
      const partitioned = await viaProxy.instance(upstream);
      const connected = await direct.instance(upstream);
      const user = await upstream.createUser();
      const key = upstream.key(user, ["chat"], 60);
      const old = await partitioned.getOrMint(key, upstream.mint(key));

      await proxy.cut();
      // The revoke reaches ACS but says it is unconfirmed: it could not be recorded in Redis.
      expect((await partitioned.invalidateUser(user, () => upstream.revoke(user))).confirmed).toBe(
        false,
      );
      // The documented gap: an instance that never lost Redis cannot know of a revoke that could
      // not be recorded, and serves the (already revoked at ACS) entry until the replay.
      const during = await connected.getOrMint(key, upstream.mint(key));
      expect(during).toEqual({ token: old.token, cached: true });
      // The revoking instance itself never serves it.
      expect((await partitioned.getOrMint(key, upstream.mint(key))).token.token).not.toBe(
        old.token.token,
      );

      await proxy.heal();
      // No request needed on the revoking instance: its journal is replayed on reconnect.
      await until(
        async () =>
          (await connected.getOrMint(key, upstream.mint(key))).token.token !== old.token.token,
        "the journaled revoke to reach Redis",
      );
      const after = await connected.getOrMint(key, upstream.mint(key));
      expect(await upstream.isActive(after.token.token)).toBe(true);
    } finally {
      await viaProxy.stop();
      await direct.stop();
    }
  });
});
