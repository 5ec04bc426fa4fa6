import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTokenCache } from "../../src/cache/index.js";
import { createKeyScheme, type KeyScheme } from "../../src/cache/keys.js";
import { namespaceFingerprint } from "../../src/cache/crypto.js";
import { UserDeletedError, type TokenCache } from "../../src/cache/token-cache.js";
import type { Config } from "../../src/config.js";
import {
  createRedisClient,
  tokenCacheKeyPrefix,
  type RedisClient,
  type RedisConnectionConfig,
} from "../../src/redis/index.js";
import { commandCounts } from "../helpers/redis.js";
import { eventually, signal, silentLogger, startUpstream, type Upstream } from "./upstream.js";

/** Per test process, so files sharing one Redis (REDIS_URL) never see each other's keys. */
export const TEST_PREFIX = `acsgwtest:${randomBytes(4).toString("hex")}:`;

export interface InstanceOptions {
  /** TOKEN_MIN_REMAINING_MINUTES @default 15 */
  minRemainingMinutes?: number;
  now?: () => number;
  /** Another ACS access key (key rotation: another namespace and, unless given, another encryption key). */
  accessKey?: string;
  encryptionKey?: Buffer;
}

/** What the shared suite needs from a backend. */
export interface CacheBackend {
  /** Redis backends share entries between instances; the memory cache is one process's own. */
  shared: boolean;
  /** A new gateway instance's cache (Redis: its own connection, like another process). */
  instance(upstream: Upstream, options?: InstanceOptions): Promise<TokenCache>;
  /** Redis: the key scheme instances use for `upstream`'s emulator (default access key). */
  keys?(upstream: Upstream): KeyScheme;
  /** Redis: a plain client on the node holding `key`'s slot. */
  rawFor?(key: string): Promise<Redis>;
  /** Redis: every key under TEST_PREFIX and all of its values' bytes, across every primary. */
  dump?(): Promise<{ key: string; bytes: Buffer }[]>;
  /** Redis: Lua script calls (EVAL, EVALSHA) every primary has run so far. */
  scriptCalls?(): Promise<number>;
  /** Redis: MGET calls (cache lookups and lock polls) every primary has run so far. */
  lookups?(): Promise<number>;
  /** Redis: the client an instance made by `instance()` uses. */
  clientOf?(cache: TokenCache): RedisClient;
  /**
   * Redis: every connection that instance sends commands on: its client, then what the cache
   * duplicated from it (the revoke connection, `createRevokeConnection`).
   */
  connectionsOf?(cache: TokenCache): RedisClient[];
  stop(): Promise<void>;
}

function baseConfig(
  redis: Config["redis"],
  minRemainingMinutes: number,
  encryptionKey?: Buffer,
): Config {
  return {
    redis,
    redisKeyPrefix: TEST_PREFIX,
    tokenCacheEncryptionKey: encryptionKey,
    tokenMinRemainingMinutes: minRemainingMinutes,
    memoryCacheMaxEntries: 1000,
  } as Config;
}

export function memoryBackend(): CacheBackend {
  const caches: TokenCache[] = [];
  return {
    shared: false,
    async instance(upstream, options = {}) {
      const cache = createTokenCache(
        baseConfig({ mode: "memory" }, options.minRemainingMinutes ?? 15),
        {
          logger: silentLogger,
          acs: {
            endpoint: upstream.emulator.endpoint,
            accessKey: options.accessKey ?? upstream.emulator.accessKey,
          },
          now: options.now,
        },
      );
      caches.push(cache);
      return cache;
    },
    async stop() {
      await Promise.all(caches.map((c) => c.close()));
    },
  };
}

/**
 * The command timeout for a Redis that is never paused or cut on purpose. The gateway's 250 ms
 * includes its own event-loop lag, which passes that on a busy machine: a read that timed out is a
 * miss (another upstream call), and these tests count hits and upstream calls to check the cache's
 * rules. The tests of a paused Redis keep the gateway's timeout: what it costs is their subject.
 */
export const HEALTHY_REDIS_TIMEOUT_MS = 10_000;

/** Resolves on the client's "ready" event (at once if it is ready already). */
export function waitReady(client: RedisClient): Promise<void> {
  if (client.status === "ready") {
    return Promise.resolve();
  }
  return new Promise((resolve) => client.once("ready", () => resolve()));
}

async function primaries(clients: Redis[]): Promise<Redis[]> {
  const out: Redis[] = [];
  for (const client of clients) {
    const role = (await client.call("ROLE")) as unknown[];
    if (role[0] === "master") {
      out.push(client);
    }
  }
  return out;
}

async function commandCalls(clients: Redis[], names: string[]): Promise<number> {
  let calls = 0;
  for (const client of await primaries(clients)) {
    const counts = await commandCounts(client);
    for (const name of names) {
      calls += counts.get(name) ?? 0;
    }
  }
  return calls;
}

/**
 * Resolves once `n` more lookups than `before` have reached the store: Redis counts its MGETs; the
 * memory store answers within microtasks, so one macrotask turn is enough.
 */
async function lookedUp(backend: CacheBackend, before: number, n: number): Promise<void> {
  if (!backend.lookups) {
    await new Promise((resolve) => setImmediate(resolve));
    return;
  }
  await eventually(async () => (await backend.lookups!()) >= before + n, `${n} lookups`);
}

/** Single Redis or Cluster, through the same factories the gateway uses. */
export function redisBackend(
  connection: RedisConnectionConfig,
  nodeClients: () => Redis[],
  clientOptions: {
    /**
     * The instances' command timeout (createRedisClient's option), for files whose Redis is
     * never slow on purpose. @default the gateway's COMMAND_TIMEOUT_MS
     */
    commandTimeoutMs?: number;
  } = {},
): CacheBackend {
  const opened: { cache: TokenCache; client: RedisClient; connections: RedisClient[] }[] = [];
  const backend: CacheBackend = {
    shared: true,
    async instance(upstream, options = {}) {
      const client = createRedisClient(connection, silentLogger, {
        commandTimeoutMs: clientOptions.commandTimeoutMs,
      });
      await waitReady(client);
      // The cache makes its revoke connection with `client.duplicate`: note each one it makes.
      const connections: RedisClient[] = [client];
      const duplicate = client.duplicate.bind(client) as (...args: unknown[]) => RedisClient;
      (client as { duplicate: typeof duplicate }).duplicate = (...args) => {
        const made = duplicate(...args);
        connections.push(made);
        return made;
      };
      const cache = createTokenCache(
        baseConfig(connection, options.minRemainingMinutes ?? 15, options.encryptionKey),
        {
          logger: silentLogger,
          acs: {
            endpoint: upstream.emulator.endpoint,
            accessKey: options.accessKey ?? upstream.emulator.accessKey,
          },
          redisClient: client,
          now: options.now,
        },
      );
      opened.push({ cache, client, connections });
      return cache;
    },
    keys: (upstream) =>
      createKeyScheme(
        tokenCacheKeyPrefix(
          TEST_PREFIX,
          namespaceFingerprint(upstream.emulator.endpoint, upstream.emulator.accessKey),
        ),
      ),
    async rawFor(key) {
      for (const client of nodeClients()) {
        try {
          await client.exists(key);
          return client;
        } catch {
          // MOVED: another node holds the slot
        }
      }
      throw new Error("no node holds the key's slot");
    },
    async dump() {
      const out: { key: string; bytes: Buffer }[] = [];
      for (const client of await primaries(nodeClients())) {
        let cursor = "0";
        do {
          const [next, batch] = await client.scanBuffer(
            cursor,
            "MATCH",
            `${TEST_PREFIX}*`,
            "COUNT",
            500,
          );
          cursor = next.toString();
          for (const keyBytes of batch) {
            const key = keyBytes.toString("latin1");
            const type = await client.type(key);
            const parts: Buffer[] = [keyBytes];
            if (type === "string") {
              const v = await client.getBuffer(key);
              if (v) {
                parts.push(v);
              }
            } else if (type === "set") {
              parts.push(...(await client.smembersBuffer(key)));
            } else if (type === "hash") {
              parts.push(...(await client.hgetallBuffer(key).then((h) => Object.values(h))));
            } else if (type === "list") {
              parts.push(...(await client.lrangeBuffer(key, 0, -1)));
            }
            out.push({ key, bytes: Buffer.concat(parts) });
          }
        } while (cursor !== "0");
      }
      return out;
    },
    scriptCalls: () => commandCalls(nodeClients(), ["eval", "evalsha"]),
    lookups: () => commandCalls(nodeClients(), ["mget"]),
    clientOf(cache) {
      const found = opened.find((o) => o.cache === cache);
      if (!found) {
        throw new Error("not an instance of this backend");
      }
      return found.client;
    },
    connectionsOf(cache) {
      const found = opened.find((o) => o.cache === cache);
      if (!found) {
        throw new Error("not an instance of this backend");
      }
      return found.connections;
    },
    async stop() {
      for (const { cache, client } of opened) {
        await cache.close();
        client.disconnect();
      }
    },
  };
  return backend;
}

/**
 * The behaviour every TokenCache must show (docs/caching.md, "The token cache, precisely"), against
 * the real SDK and the emulator. `setup` starts the backend's servers; it is stopped in afterAll.
 */
export function describeTokenCacheBehaviour(
  name: string,
  kind: { shared: boolean },
  setup: () => Promise<CacheBackend>,
): void {
  describe(`the token cache (${name})`, () => {
    let backend: CacheBackend;
    let upstream: Upstream;
    let a: TokenCache;
    let b: TokenCache;

    beforeAll(async () => {
      [backend, upstream] = await Promise.all([setup(), startUpstream()]);
      a = await backend.instance(upstream);
      b = backend.shared ? await backend.instance(upstream) : a;
    });

    afterAll(async () => {
      await backend?.stop();
      await upstream?.close();
    });

    it("serves repeated and reordered-scope requests from one upstream call", async () => {
      const user = await upstream.createUser();
      const before = upstream.issued();
      const first = await a.getOrMint(
        upstream.key(user, ["voip", "chat"], 60),
        upstream.mint(upstream.key(user, ["voip", "chat"], 60)),
      );
      const again = await a.getOrMint(
        upstream.key(user, ["chat", "voip", "chat"], 60),
        upstream.mint(upstream.key(user, ["chat", "voip"], 60)),
      );
      const third = await a.getOrMint(
        upstream.key(user, ["voip", "chat"], 60),
        upstream.mint(upstream.key(user, ["chat", "voip"], 60)),
      );
      expect(upstream.issued() - before).toBe(1);
      expect(first.cached).toBe(false);
      expect(again).toEqual({ token: first.token, cached: true });
      expect(third.token.token).toBe(first.token.token);
    });

    it("makes another upstream call for a different lifetime, scope set or the default lifetime", async () => {
      const user = await upstream.createUser();
      const before = upstream.issued();
      const keys = [
        upstream.key(user, ["chat"], 60),
        upstream.key(user, ["chat"], 61),
        upstream.key(user, ["chat", "voip"], 60),
        upstream.key(user, ["chat"]),
      ];
      const tokens = new Set<string>();
      for (const key of keys) {
        tokens.add((await a.getOrMint(key, upstream.mint(key))).token.token);
        tokens.add((await b.getOrMint(key, upstream.mint(key))).token.token);
      }
      expect(upstream.issued() - before).toBe(4);
      expect(tokens.size).toBe(4);
    });

    it("after a revoke, the next request makes a new upstream call and its token is active by introspection", async () => {
      const user = await upstream.createUser();
      const key = upstream.key(user, ["voip"], 60);
      const old = await a.getOrMint(key, upstream.mint(key));
      await b.getOrMint(key, upstream.mint(key));
      const before = upstream.issued();
      await b.invalidateUser(user, () => upstream.revoke(user));
      const fresh = await a.getOrMint(key, upstream.mint(key));
      const fromB = await b.getOrMint(key, upstream.mint(key));
      expect(upstream.issued() - before).toBe(1);
      expect(fresh.cached).toBe(false);
      expect(fresh.token.token).not.toBe(old.token.token);
      expect(fromB.token.token).toBe(fresh.token.token);
      expect(await upstream.isActive(fresh.token.token)).toBe(true);
      expect(await upstream.isActive(old.token.token)).toBe(false);
    });

    it("100 concurrent identical cold requests make one upstream call", async () => {
      const user = await upstream.createUser();
      const key = upstream.key(user, ["chat"], 90);
      const before = upstream.issued();
      // ACS answers only once every request has looked the entry up: all 100 are concurrent.
      const gate = signal();
      const lookupsBefore = (await backend.lookups?.()) ?? 0;
      const pending = Promise.all(
        Array.from({ length: 100 }, () =>
          a.getOrMint(key, upstream.mint(key, { gate: gate.promise })),
        ),
      );
      await lookedUp(backend, lookupsBefore, 100);
      gate.fire();
      const results = await pending;
      expect(upstream.issued() - before).toBe(1);
      expect(new Set(results.map((r) => r.token.token)).size).toBe(1);
    });

    it("answers a deleted user with UserDeletedError and no upstream call, on every instance", async () => {
      const user = await upstream.createUser();
      const key = upstream.key(user, ["chat"], 60);
      await a.getOrMint(key, upstream.mint(key));
      await a.invalidateUser(user, () => upstream.deleteUser(user), { tombstone: true });
      const before = upstream.issued();
      await expect(a.getOrMint(key, upstream.mint(key))).rejects.toBeInstanceOf(UserDeletedError);
      await expect(
        b.getOrMint(upstream.key(user, ["voip"]), upstream.mint(key)),
      ).rejects.toBeInstanceOf(UserDeletedError);
      expect(upstream.issued()).toBe(before);
      expect(await a.isDeleted(user)).toBe(true);
      expect(await b.isDeleted(user)).toBe(true);
    });

    it("a failed revoke still drops the cached tokens, rethrows, and leaves no tombstone", async () => {
      const user = await upstream.createUser();
      const key = upstream.key(user, ["chat"], 60);
      await a.getOrMint(key, upstream.mint(key));
      await expect(
        a.invalidateUser(user, () => Promise.reject(new Error("ACS down")), { tombstone: true }),
      ).rejects.toThrow("ACS down");
      expect(await a.isDeleted(user)).toBe(false);
      const next = await b.getOrMint(key, upstream.mint(key));
      expect(next.cached).toBe(false);
    });

    it("never serves a token whose upstream answer arrived after a concurrent revoke", async () => {
      const user = await upstream.createUser();
      const key = upstream.key(user, ["chat", "voip"], 120);
      const { promise: gate, fire: release } = signal();
      const { promise: answered, fire: held } = signal();
      upstream.emulator.hooks.beforeRespond = async (operation, info) => {
        if (operation === "issueAccessToken" && info.identityId === user) {
          upstream.emulator.hooks.beforeRespond = undefined;
          held();
          await gate; // the token is minted at ACS; its answer waits here
        }
      };
      const late = a.getOrMint(key, upstream.mint(key));
      await answered;
      await b.invalidateUser(user, () => upstream.revoke(user));
      // A request after the revoke returned must not join the flight still waiting for ACS, and
      // must not wait for that flight's lock (taken under the pre-revoke epoch): when it calls
      // ACS, it holds the lock itself, under the current epoch, while the late answer is held.
      const mintAfter = upstream.mint(key);
      let lockAtMint: { lock: string | null; epoch: string | null } | undefined;
      const afterRevoke = await a.getOrMint(key, async () => {
        if (backend.keys) {
          const keys = backend.keys(upstream);
          const raw = await backend.rawFor!(keys.epoch(user));
          lockAtMint = {
            lock: await raw.get(keys.lock(user, "chat,voip:120")),
            epoch: await raw.get(keys.epoch(user)),
          };
        }
        return mintAfter();
      });
      if (backend.keys) {
        expect(lockAtMint?.epoch).toBeTruthy();
        expect(lockAtMint?.lock?.endsWith(`|${lockAtMint.epoch}`)).toBe(true);
      }
      release();
      const lateResult = await late;
      expect(afterRevoke.token.token).not.toBe(lateResult.token.token);
      expect(await upstream.isActive(lateResult.token.token)).toBe(false);
      for (const cache of [a, b]) {
        const served = await cache.getOrMint(key, upstream.mint(key));
        expect(served.token.token).not.toBe(lateResult.token.token);
        expect(await upstream.isActive(served.token.token)).toBe(true);
      }
    });

    it("does not serve a token with less than the minimum remaining time, and issues a fresh one", async () => {
      let skew = 0;
      const clock = await backend.instance(upstream, { now: () => Date.now() + skew });
      const user = await upstream.createUser();
      const key = upstream.key(user, ["chat"], 60);
      expect((await clock.getOrMint(key, upstream.mint(key))).cached).toBe(false);
      skew = 40 * 60_000; // 20 minutes left: still served (>= 15)
      expect((await clock.getOrMint(key, upstream.mint(key))).cached).toBe(true);
      skew = 46 * 60_000; // 14 minutes left: not served
      const before = upstream.issued();
      const second = await clock.getOrMint(key, upstream.mint(key));
      expect(second.cached).toBe(false);
      expect(upstream.issued() - before).toBe(1);
    });

    it("returns a minted token that is already below the minimum but does not cache it", async () => {
      const strict = await backend.instance(upstream, { minRemainingMinutes: 61 });
      const user = await upstream.createUser();
      const key = upstream.key(user, ["voip"], 60);
      const before = upstream.issued();
      const one = await strict.getOrMint(key, upstream.mint(key));
      const two = await strict.getOrMint(key, upstream.mint(key));
      expect([one.cached, two.cached]).toEqual([false, false]);
      expect(upstream.issued() - before).toBe(2);
    });

    // Only a shared store has instances to share with; not registered (not "skipped") for memory.
    (kind.shared ? describe : () => undefined)("across gateway instances", () => {
      it("two instances on one store share entries: one upstream call for both", async () => {
        const user = await upstream.createUser();
        const key = upstream.key(user, ["chat"], 60);
        const before = upstream.issued();
        const fromA = await a.getOrMint(key, upstream.mint(key));
        const fromB = await b.getOrMint(key, upstream.mint(key));
        expect(upstream.issued() - before).toBe(1);
        expect(fromB).toEqual({ token: fromA.token, cached: true });
      });

      it("100 concurrent cold requests spread over two instances make one upstream call", async () => {
        const user = await upstream.createUser();
        const key = upstream.key(user, ["voip"], 75);
        const before = upstream.issued();
        const gate = signal();
        const lookupsBefore = await backend.lookups!();
        const pending = Promise.all(
          Array.from({ length: 100 }, (_, i) =>
            (i % 2 ? a : b).getOrMint(key, upstream.mint(key, { gate: gate.promise })),
          ),
        );
        await lookedUp(backend, lookupsBefore, 100);
        gate.fire();
        const results = await pending;
        expect(upstream.issued() - before).toBe(1);
        expect(new Set(results.map((r) => r.token.token)).size).toBe(1);
      });

      it("a waiter mints itself when the lock holder died without writing an entry", async () => {
        const user = await upstream.createUser();
        const key = upstream.key(user, ["chat"], 60);
        const keys = backend.keys!(upstream);
        const other = upstream.key(user, ["voip"], 60);
        await a.getOrMint(other, upstream.mint(other)); // the user now has an epoch
        const raw = await backend.rawFor!(keys.epoch(user));
        const epoch = await raw.get(keys.epoch(user));
        // A lock as a live instance leaves it: "<owner>|<epoch>"; the instance then dies.
        await raw.set(keys.lock(user, "chat:60"), `a-dead-instance|${epoch}`, "PX", 300);
        const before = upstream.issued();
        const mint = upstream.mint(key);
        let lockAtMint: string | null = null;
        const result = await a.getOrMint(key, async () => {
          lockAtMint = await raw.get(keys.lock(user, "chat:60"));
          return mint();
        });
        expect(result.cached).toBe(false);
        expect(upstream.issued() - before).toBe(1);
        // It called ACS only once the dead instance's lock was gone, holding a lock of its own.
        expect(lockAtMint).not.toBeNull();
        expect(lockAtMint).not.toBe(`a-dead-instance|${epoch}`);
        expect(lockAtMint!.endsWith(`|${epoch}`)).toBe(true);
        expect((await b.getOrMint(key, upstream.mint(key))).cached).toBe(true);
      });

      it("a waiter takes over when the lock holder's upstream call fails", async () => {
        const user = await upstream.createUser();
        const key = upstream.key(user, ["chat"], 60);
        const { promise: holding, fire: holderCalled } = signal();
        const { promise: gate, fire: failNow } = signal();
        const failing = a.getOrMint(key, async () => {
          holderCalled();
          await gate;
          throw new Error("upstream failed (test)");
        });
        await holding; // a holds the lock and is "calling ACS"
        const scriptsBefore = await backend.scriptCalls!();
        const waiter = b.getOrMint(key, upstream.mint(key));
        // b's BEGIN ran (and found a's lock): b is now waiting for the holder.
        await eventually(
          async () => (await backend.scriptCalls!()) > scriptsBefore,
          "the waiter to find the lock",
        );
        failNow();
        await expect(failing).rejects.toThrow("upstream failed");
        const result = await waiter;
        expect(result.cached).toBe(false);
        expect(await upstream.isActive(result.token.token)).toBe(true);
      });

      it("a rotated access key (another namespace) never sees the old entries, and a foreign encryption key is a miss", async () => {
        const user = await upstream.createUser();
        const key = upstream.key(user, ["chat"], 60);
        await a.getOrMint(key, upstream.mint(key));
        const rotated = await backend.instance(upstream, {
          accessKey: randomBytes(64).toString("base64"),
        });
        const otherKey = await backend.instance(upstream, { encryptionKey: randomBytes(32) });
        const before = upstream.issued();
        const fromRotated = await rotated.getOrMint(key, upstream.mint(key));
        const fromOtherKey = await otherKey.getOrMint(key, upstream.mint(key));
        expect([fromRotated.cached, fromOtherKey.cached]).toEqual([false, false]);
        expect(upstream.issued() - before).toBe(2);
      });

      it("holds no token text and no JWT-looking string anywhere in Redis", async () => {
        const user = await upstream.createUser();
        const key = upstream.key(user, ["chat", "voip"], 60);
        await a.getOrMint(key, upstream.mint(key));
        const dump = await backend.dump!();
        expect(dump.some((d) => d.key.startsWith(backend.keys!(upstream).prefix))).toBe(true);
        expect(upstream.tokens.size).toBeGreaterThan(5);
        for (const { key: name, bytes } of dump) {
          const text = bytes.toString("latin1");
          expect(text, name).not.toMatch(/eyJ[\w-]{5,}/);
          for (const token of upstream.tokens) {
            expect(text.includes(token), name).toBe(false);
            expect(text.includes(token.split(".")[2]!), name).toBe(false);
          }
        }
      });
    });
  });
}
