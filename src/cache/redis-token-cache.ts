import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { Redis } from "ioredis";
import type { IssuedToken } from "../identity/identity-provider.js";
import type { Logger } from "../logger.js";
import { createBreaker } from "./breaker.js";
import { openToken, sealToken } from "./crypto.js";
import { createFlights, type Flight } from "./flights.js";
import { createKeyScheme, entrySuffix, type KeyScheme } from "./keys.js";
import { redisScript, runScript, type RedisScript } from "./redis-scripts.js";
import type { RedisClient } from "./redis-client.js";
import {
  UserDeletedError,
  type TokenCache,
  type TokenCacheKey,
  type TokenCacheResult,
} from "./token-cache.js";

export type LookupResult = "hit" | "miss";

export interface RedisTokenCacheOptions {
  /** Shared with other stores if wanted; closed by `close()` only when `closeClient` is set. */
  client: RedisClient;
  /** REDIS_KEY_PREFIX + "tc1:" + namespace fingerprint + ":" (see `cacheKeyPrefix`). */
  keyPrefix: string;
  /** 32 bytes (AES-256-GCM). */
  encryptionKey: Buffer;
  /** A cached token is served only while at least this long remains; its Redis TTL ends there. */
  minRemainingMs: number;
  /** How long a singleflight lock holder may take before waiters mint themselves. @default 5000 */
  lockTtlMs?: number;
  /** How often a waiter looks for the holder's entry. @default 25 */
  waitPollMs?: number;
  breaker?: {
    /** @default 5 */
    failureThreshold?: number;
    /** @default 1000 */
    openMs?: number;
  };
  /** How long a deleted user is answered NOT_FOUND without an upstream call. @default 7 days */
  tombstoneTtlMs?: number;
  /** Invalidations that could not reach Redis, remembered for replay (oldest dropped beyond). @default 100000 */
  maxPendingInvalidations?: number;
  /** Pause between replay attempts while invalidations are pending. @default 500 */
  recoveryRetryMs?: number;
  /** `close()` also closes the client. @default false */
  closeClient?: boolean;
  /** Clock for expiry decisions (tests). @default Date.now */
  now?: () => number;
  logger: Logger;
  onLookup?: (result: LookupResult) => void;
}

/** Longest ACS lifetime (24 h) plus a margin: the epoch key outlives every entry written under it. */
const EPOCH_TTL_MS = 25 * 60 * 60 * 1000;
const MAX_FLIGHT_ATTEMPTS = 3;
const PIPE = 0x7c; // "|"

type Script = RedisScript;
const script = redisScript;

// Epoch values are Redis TIME in microseconds, forced above the previous value: they never repeat,
// not even after the epoch key expired, was evicted or lost with the rest of Redis's data. So an
// entry written under an old epoch can never match a later one (an INCR counter restarting at 1
// could). 1.7e15 is far below 2^53, so Lua's doubles hold it exactly; "%.0f" prints it whole.

/**
 * KEYS: epoch, lock. ARGV: lockOwner ("" = don't lock), lockTtlMs, epochTtlMs. -> {epoch, locked, nowMs}
 * The lock's value is "<owner>|<epoch>": a lock taken under an older epoch (its holder is minting
 * for a user revoked since) is taken over at once instead of making post-revoke callers wait.
 */
const BEGIN = script(`
local e = redis.call('GET', KEYS[1])
local t = redis.call('TIME')
if not e then
  e = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
  redis.call('SET', KEYS[1], e, 'PX', ARGV[3])
end
local locked = 0
if ARGV[1] ~= '' then
  local held = redis.call('GET', KEYS[2])
  if not held or string.sub(held, -(#e + 1)) ~= '|' .. e then
    redis.call('SET', KEYS[2], ARGV[1] .. '|' .. e, 'PX', ARGV[2])
    locked = 1
  end
end
return {e, locked, string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))}
`);

/**
 * KEYS: epoch, entry, index, lock. ARGV: expectedEpoch, value, ttlMs, lockValue, suffix, epochTtlMs.
 * Writes only if the user's epoch is still the one read before minting: the late-answer race
 * (ARCHITECTURE.md) is closed here, atomically. Releases the lock if still ours, either way.
 */
const PUT = script(`
local stored = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local ttl = tonumber(ARGV[3])
  if ttl > 0 then
    redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
    redis.call('SADD', KEYS[3], ARGV[5])
    if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], ttl) end
    if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ARGV[6]) end
    stored = 1
  end
end
if ARGV[4] ~= '' and redis.call('GET', KEYS[4]) == ARGV[4] then redis.call('DEL', KEYS[4]) end
return stored
`);

/**
 * KEYS: epoch, tombstone, index, entries... ARGV: epochTtlMs, tombstone ("1"/"0"), tombstoneTtlMs.
 * A new epoch (every entry of the user becomes unservable at once, on every instance), then the
 * entries themselves are dropped (tidiness: correctness rests on the epoch, because an entry
 * written after the SMEMBERS that listed them still carries the old epoch).
 */
const INVALIDATE = script(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local t = redis.call('TIME')
local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
if v <= cur then v = cur + 1 end
redis.call('SET', KEYS[1], string.format('%.0f', v), 'PX', ARGV[1])
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
if ARGV[2] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
return 1
`);

/** KEYS: lock. ARGV: lockValue. Compare-and-delete. */
const RELEASE = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

type WaitOutcome =
  | { kind: "hit"; token: IssuedToken }
  | { kind: "deleted" }
  | { kind: "retry" }
  | { kind: "timeout" }
  | { kind: "error" };

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The Redis token cache. Rules: ARCHITECTURE.md ("The token cache, precisely") and docs/caching.md.
 *
 * Hot path: a hit is ONE round trip, `MGET epoch tombstone entry` (three keys of one slot, so it is
 * cluster-correct without a script), then a byte comparison of the entry's epoch header and one
 * AES-GCM open. A miss adds BEGIN (read/initialise the epoch, take the lock) and PUT.
 *
 * Redis outages (see docs/caching.md, "When Redis is unavailable"):
 * - Every failure is a miss; after `failureThreshold` in a row the breaker skips Redis for `openMs`.
 * - An invalidation that cannot reach Redis still runs `upstream` (the revoke reaches ACS) and is
 *   remembered in a bounded journal. While a user is in the journal this instance never reads or
 *   writes that user's entries (and answers deleted users from the journal). The journal is
 *   replayed (new epochs, tombstones) on a timer and before any read once Redis answers again.
 * - Fence: an instance that lost an established connection, or whose breaker opened, serves on
 *   recovery only entries begun after its recovery (Redis TIME), so a revoke journaled by ANOTHER
 *   instance, which may not have replayed yet (or died), cannot leak a pre-revoke token through
 *   it. The price is one re-mint per entry per such instance after an outage.
 * - Not covered: an instance that kept its connection throughout a partial partition may serve a
 *   revoked user's entry until the revoking instance replays its journal (or the entry expires).
 *   That token is already revoked at ACS.
 */
export function createRedisTokenCache(options: RedisTokenCacheOptions): TokenCache {
  const { logger, onLookup, minRemainingMs } = options;
  const client = options.client;
  // Redis and Cluster share the command API; one view keeps the call sites simple.
  const redis = client as Redis;
  const key = options.encryptionKey;
  const keys: KeyScheme = createKeyScheme(options.keyPrefix);
  const now = options.now ?? Date.now;
  const lockTtlMs = options.lockTtlMs ?? 5000;
  const waitPollMs = options.waitPollMs ?? 25;
  const tombstoneTtlMs = options.tombstoneTtlMs ?? 7 * 24 * 60 * 60 * 1000;
  const maxPending = options.maxPendingInvalidations ?? 100_000;
  const recoveryRetryMs = options.recoveryRetryMs ?? 500;
  const breaker = createBreaker(options.breaker);
  const flights = createFlights<TokenCacheResult>();

  /** userId -> invalidation not yet recorded in Redis (insertion order = age). */
  const journal = new Map<string, { tombstone: boolean }>();
  let needsFence = false;
  /** Entries begun before this Redis time (ms) are not served by this instance. */
  let fenceMs = 0;
  let wasReady = client.status === "ready";
  let recovering: Promise<boolean> | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let closed = false;

  const onReady = () => {
    wasReady = true;
    if (journal.size > 0 || needsFence) {
      void recover();
    }
  };
  const onClose = () => {
    if (wasReady) {
      // The connection we had is gone: whatever happened meanwhile (another instance's revoke
      // that could not be recorded) must not be papered over by entries from before.
      needsFence = true;
      wasReady = false;
    }
  };
  client.on("ready", onReady);
  client.on("close", onClose);
  client.on("end", onClose);

  function failure(error: unknown, what: string): void {
    logger.debug(
      { err: { message: (error as Error)?.message }, op: what },
      "token cache: redis call failed",
    );
    if (breaker.failure()) {
      needsFence = true;
      logger.warn(
        { openMs: options.breaker?.openMs ?? 1000 },
        "token cache: redis keeps failing; serving straight from ACS for now",
      );
    }
  }

  const run = (s: Script, keyList: string[], args: (string | Buffer | number)[]) =>
    runScript(redis, s, keyList, args);

  async function writeInvalidation(userId: string, tombstone: boolean): Promise<void> {
    const members = await redis.smembers(keys.index(userId));
    const entryKeys = members.map((suffix) => keys.entry(userId, suffix));
    await run(
      INVALIDATE,
      [keys.epoch(userId), keys.tombstone(userId), keys.index(userId), ...entryKeys],
      [EPOCH_TTL_MS, tombstone ? "1" : "0", tombstoneTtlMs],
    );
  }

  function remember(userId: string, tombstone: boolean): void {
    const pending = journal.get(userId);
    if (pending) {
      pending.tombstone ||= tombstone;
    } else {
      if (journal.size >= maxPending) {
        const oldest = journal.keys().next().value as string;
        journal.delete(oldest);
        logger.error(
          { maxPendingInvalidations: maxPending },
          "token cache: too many invalidations waiting for redis; the oldest is forgotten (its entries expire by TTL)",
        );
      }
      journal.set(userId, { tombstone });
    }
    scheduleRetry();
  }

  function scheduleRetry(): void {
    if (retryTimer || closed || journal.size === 0) {
      return;
    }
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      if (client.status === "ready" && breaker.canTry()) {
        void recover().then((ok) => (ok ? undefined : scheduleRetry()));
      } else {
        scheduleRetry();
      }
    }, recoveryRetryMs);
    retryTimer.unref();
  }

  /** Replay the journal, then set the fence; only then may reads go through. One at a time. */
  function recover(): Promise<boolean> {
    recovering ??= (async () => {
      try {
        const replayed = journal.size;
        const batch: Promise<void>[] = [];
        for (const [userId, pending] of [...journal]) {
          batch.push(
            writeInvalidation(userId, pending.tombstone).then(() => {
              if (journal.get(userId) === pending) {
                journal.delete(userId);
              }
            }),
          );
          if (batch.length >= 32) {
            await Promise.all(batch.splice(0));
          }
        }
        await Promise.all(batch);
        if (needsFence) {
          const [seconds, micros] = await redis.time();
          fenceMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
          needsFence = false;
        }
        breaker.success();
        if (replayed > 0) {
          logger.info({ replayed }, "token cache: redis back; pending invalidations recorded");
        }
        return journal.size === 0;
      } catch (error) {
        failure(error, "recover");
        scheduleRetry();
        return false;
      } finally {
        recovering = undefined;
      }
    })();
    return recovering;
  }

  /** May this request use Redis? Never sends a command when the answer is known to be no. */
  async function usable(): Promise<boolean> {
    if (closed || client.status !== "ready" || !breaker.canTry()) {
      return false;
    }
    if (!needsFence && journal.size === 0) {
      return true;
    }
    return recover();
  }

  /** The entry's token, if it may be served: epoch matches, begun after the fence, opens, fresh enough. */
  function readEntry(
    entryKey: string,
    epoch: Buffer | null,
    raw: Buffer | null,
  ): IssuedToken | undefined {
    if (!raw || !epoch) {
      return undefined;
    }
    const a = raw.indexOf(PIPE);
    if (a !== epoch.length || raw.compare(epoch, 0, epoch.length, 0, a) !== 0) {
      return undefined;
    }
    const b = raw.indexOf(PIPE, a + 1);
    if (b < 0) {
      return undefined;
    }
    if (fenceMs > 0 && !(Number(raw.toString("latin1", a + 1, b)) >= fenceMs)) {
      return undefined;
    }
    const token = openToken(
      key,
      `${entryKey}|${raw.toString("latin1", 0, b)}`,
      raw.subarray(b + 1),
    );
    if (!token || token.expiresOn - now() < minRemainingMs) {
      return undefined;
    }
    return token;
  }

  async function releaseLock(lockKey: string, lockValue: string): Promise<void> {
    try {
      await run(RELEASE, [lockKey], [lockValue]);
    } catch (error) {
      failure(error, "release");
    }
  }

  async function mintAndStore(
    userId: string,
    suffix: string,
    epoch: string,
    beganAtMs: string,
    /** "<owner>|<epoch>" when this flight holds the lock, "" when it minted without it. */
    lockValue: string,
    mint: () => Promise<IssuedToken>,
  ): Promise<TokenCacheResult> {
    const entryKey = keys.entry(userId, suffix);
    const lockKey = keys.lock(userId, suffix);
    let token: IssuedToken;
    try {
      token = await mint();
    } catch (error) {
      if (lockValue) {
        await releaseLock(lockKey, lockValue);
      }
      throw error;
    }
    // The TTL ends exactly when the token may no longer be served.
    const ttl = Math.floor(token.expiresOn - minRemainingMs - now());
    if (ttl > 0 || lockValue) {
      const header = `${epoch}|${beganAtMs}`;
      const value =
        ttl > 0
          ? Buffer.concat([
              Buffer.from(`${header}|`, "latin1"),
              sealToken(key, `${entryKey}|${header}`, token),
            ])
          : "";
      try {
        await run(
          PUT,
          [keys.epoch(userId), entryKey, keys.index(userId), lockKey],
          [epoch, value, Math.max(ttl, 0), lockValue, suffix, EPOCH_TTL_MS],
        );
      } catch (error) {
        failure(error, "put");
      }
    }
    return { token, cached: false };
  }

  async function waitForHolder(
    userId: string,
    suffix: string,
    epoch: string,
    deadline: number,
  ): Promise<WaitOutcome> {
    const entryKey = keys.entry(userId, suffix);
    const watched = [
      keys.epoch(userId),
      keys.tombstone(userId),
      entryKey,
      keys.lock(userId, suffix),
    ];
    for (;;) {
      await sleep(waitPollMs);
      if (closed) {
        return { kind: "error" };
      }
      let seen: (Buffer | null)[];
      try {
        seen = await redis.mgetBuffer(watched);
      } catch (error) {
        failure(error, "wait");
        return { kind: "error" };
      }
      if (seen[1]) {
        return { kind: "deleted" };
      }
      if (!seen[0] || seen[0].toString("latin1") !== epoch) {
        return { kind: "retry" };
      }
      const token = readEntry(entryKey, seen[0], seen[2] ?? null);
      if (token) {
        return { kind: "hit", token };
      }
      const lock = seen[3];
      if (
        !lock ||
        lock.length <= epoch.length ||
        lock.toString("latin1", lock.length - epoch.length - 1) !== `|${epoch}`
      ) {
        // No current lock and no entry: the holder failed, died, its write was refused, or it
        // holds a lock from before a revoke. Take over.
        return { kind: "retry" };
      }
      if (performance.now() >= deadline) {
        return { kind: "timeout" };
      }
    }
  }

  async function fly(
    userId: string,
    suffix: string,
    flight: Flight<TokenCacheResult>,
    mint: () => Promise<IssuedToken>,
  ): Promise<TokenCacheResult> {
    const owner = randomBytes(9).toString("base64url");
    const deadline = performance.now() + lockTtlMs + 4 * waitPollMs;
    for (let attempt = 0; attempt < MAX_FLIGHT_ATTEMPTS; attempt++) {
      let epoch: string;
      let beganAtMs: string;
      let locked: boolean;
      try {
        const begun = (await run(
          BEGIN,
          [keys.epoch(userId), keys.lock(userId, suffix)],
          [owner, lockTtlMs, EPOCH_TTL_MS],
        )) as [string, number, string];
        [epoch, , beganAtMs] = begun;
        locked = begun[1] === 1;
      } catch (error) {
        failure(error, "begin");
        return { token: await mint(), cached: false };
      }
      flight.epoch = epoch;
      if (locked) {
        return mintAndStore(userId, suffix, epoch, beganAtMs, `${owner}|${epoch}`, mint);
      }
      const outcome = await waitForHolder(userId, suffix, epoch, deadline);
      switch (outcome.kind) {
        case "hit":
          return { token: outcome.token, cached: true };
        case "deleted":
          throw new UserDeletedError(userId);
        case "error":
          return { token: await mint(), cached: false };
        case "timeout":
          // The holder is alive but slow: mint without the lock; PUT still checks the epoch.
          return mintAndStore(userId, suffix, epoch, beganAtMs, "", mint);
        case "retry":
          break;
      }
    }
    return { token: await mint(), cached: false };
  }

  /** Singleflight in this process only, no Redis (Redis unusable, or the user has a pending invalidation). */
  function direct(
    userId: string,
    suffix: string,
    mint: () => Promise<IssuedToken>,
  ): Promise<TokenCacheResult> {
    const existing = flights.get(userId, suffix);
    if (existing) {
      return existing.promise;
    }
    const flight: Flight<TokenCacheResult> = {
      epoch: undefined,
      promise: mint().then((token) => ({ token, cached: false })),
    };
    flight.promise = flight.promise.finally(() => flights.end(userId, suffix, flight));
    flights.set(userId, suffix, flight);
    return flight.promise;
  }

  async function lookupOrMint(
    cacheKey: TokenCacheKey,
    mint: () => Promise<IssuedToken>,
  ): Promise<TokenCacheResult> {
    const userId = cacheKey.userId;
    const suffix = entrySuffix(cacheKey);
    const pending = journal.get(userId);
    if (pending?.tombstone) {
      throw new UserDeletedError(userId);
    }
    if (pending || !(await usable())) {
      return direct(userId, suffix, mint);
    }
    const entryKey = keys.entry(userId, suffix);
    let seen: (Buffer | null)[];
    try {
      seen = await redis.mgetBuffer(keys.epoch(userId), keys.tombstone(userId), entryKey);
    } catch (error) {
      failure(error, "get");
      return direct(userId, suffix, mint);
    }
    breaker.success();
    if (seen[1]) {
      throw new UserDeletedError(userId);
    }
    const token = readEntry(entryKey, seen[0] ?? null, seen[2] ?? null);
    if (token) {
      return { token, cached: true };
    }
    const epoch = seen[0]?.toString("latin1");
    const existing = flights.get(userId, suffix);
    // Join only a flight under the epoch this lookup saw (or one not begun yet): never one that
    // began before a revoke this lookup already observed.
    if (
      existing &&
      (existing.epoch === undefined || epoch === undefined || existing.epoch === epoch)
    ) {
      return existing.promise;
    }
    const flight: Flight<TokenCacheResult> = {
      epoch: undefined,
      promise: Promise.resolve() as never,
    };
    flight.promise = fly(userId, suffix, flight, mint).finally(() =>
      flights.end(userId, suffix, flight),
    );
    flights.set(userId, suffix, flight);
    return flight.promise;
  }

  /** One side of the invalidation bracket. Never throws: what cannot reach Redis is journaled. */
  async function bracket(userId: string, tombstone: boolean): Promise<void> {
    flights.dropUser(userId);
    // usable() replays the journal first when it can, so a journaled user is written in order.
    if ((await usable()) && !journal.has(userId)) {
      try {
        await writeInvalidation(userId, tombstone);
        breaker.success();
        return;
      } catch (error) {
        failure(error, "invalidate");
      }
    }
    remember(userId, tombstone);
  }

  return {
    async getOrMint(cacheKey, mint) {
      const result = await lookupOrMint(cacheKey, mint);
      onLookup?.(result.cached ? "hit" : "miss");
      return result;
    },

    async invalidateUser(userId, upstream, opts) {
      await bracket(userId, false);
      let result;
      try {
        result = await upstream();
      } catch (error) {
        await bracket(userId, false);
        throw error;
      }
      await bracket(userId, opts?.tombstone === true);
      return result;
    },

    async isDeleted(userId) {
      const pending = journal.get(userId);
      if (pending) {
        return pending.tombstone;
      }
      if (!(await usable())) {
        return false;
      }
      try {
        return (await redis.exists(keys.tombstone(userId))) === 1;
      } catch (error) {
        failure(error, "isDeleted");
        return false;
      }
    },

    async isReady() {
      if (closed || client.status !== "ready" || !breaker.canTry()) {
        return false;
      }
      try {
        return (await redis.ping()) === "PONG";
      } catch (error) {
        failure(error, "ping");
        return false;
      }
    },

    async close() {
      closed = true;
      if (retryTimer) {
        clearTimeout(retryTimer);
        retryTimer = undefined;
      }
      client.off("ready", onReady);
      client.off("close", onClose);
      client.off("end", onClose);
      if (options.closeClient) {
        try {
          await client.quit();
        } catch {
          client.disconnect();
        }
      }
    },
  };
}
