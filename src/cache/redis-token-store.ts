import { createSecretKey } from "node:crypto";
import type { Redis } from "ioredis";
import { awaitReplicaAck, type RedisClient } from "../redis/client.js";
import { redisScript, runScript } from "../redis/scripts.js";
import { openToken, sealToken } from "./crypto.js";
import { createKeyScheme, type KeyScheme } from "./keys.js";
import { TOMBSTONE_TTL_MS } from "./memory-token-store.js";
import type { StoredEntry, TokenStore } from "./token-store.js";

export interface RedisTokenStoreOptions {
  client: RedisClient;
  /**
   * Where invalidations (and their replica acknowledgement) are sent; `client` when omitted.
   * A connection of its own keeps `WAIT` from holding up reads (createRevokeConnection).
   */
  revokeClient?: RedisClient;
  /** REDIS_KEY_PREFIX + "tc1:" + namespace fingerprint + ":" (see `tokenCacheKeyPrefix`). */
  keyPrefix: string;
  /** 32 bytes (AES-256-GCM). */
  encryptionKey: Buffer;
  /** How long a singleflight lock lives. */
  lockTtlMs: number;
}

/** Longest ACS lifetime (24 h) plus a margin: the epoch key outlives every entry written under it. */
const EPOCH_TTL_MS = 25 * 60 * 60 * 1000;
const PIPE = 0x7c; // "|"

// Epoch values are Redis TIME in microseconds, forced above the previous value: they never repeat,
// not even after the epoch key expired, was evicted or lost with the rest of Redis's data. So an
// entry written under an old epoch can never match a later one (an INCR counter restarting at 1
// could). 1.7e15 is far below 2^53, so Lua's doubles hold it exactly; "%.0f" prints it whole.

/**
 * KEYS: epoch, lock, entry. ARGV: lockOwner, lockTtlMs, epochTtlMs.
 * -> {epoch, locked, nowMs} or, when an entry was written under the epoch since the caller's read
 * (a flight that just finished), {epoch, 0, nowMs, entry} and no lock: the caller serves it
 * instead of minting the same token again.
 * The lock's value is "<owner>|<epoch>": a lock taken under an older epoch (its holder is minting
 * for a user revoked since) is taken over at once instead of making post-revoke callers wait.
 */
const BEGIN = redisScript(`
local e = redis.call('GET', KEYS[1])
local t = redis.call('TIME')
local nowMs = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
if not e then
  e = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
  redis.call('SET', KEYS[1], e, 'PX', ARGV[3])
else
  local entry = redis.call('GET', KEYS[3])
  if entry and string.sub(entry, 1, #e + 1) == e .. '|' then
    return {e, 0, nowMs, entry}
  end
end
local locked = 0
local held = redis.call('GET', KEYS[2])
if not held or string.sub(held, -(#e + 1)) ~= '|' .. e then
  redis.call('SET', KEYS[2], ARGV[1] .. '|' .. e, 'PX', ARGV[2])
  locked = 1
end
return {e, locked, nowMs}
`);

/**
 * KEYS: epoch, entry, index, lock. ARGV: expectedEpoch, value, ttlMs, lockValue, suffix, epochTtlMs.
 * Writes only if the user's epoch is still the one read before minting: the late-answer race
 * (docs/caching.md, "The token cache, precisely") is closed here, atomically. Releases the lock if
 * still ours, either way.
 */
const PUT = redisScript(`
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
const INVALIDATE = redisScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local t = redis.call('TIME')
local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
if v <= cur then v = cur + 1 end
redis.call('SET', KEYS[1], string.format('%.0f', v), 'PX', ARGV[1])
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
if ARGV[2] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
return 1
`);

/**
 * KEYS: lock. ARGV: owner. Deletes the lock if `owner` holds it, under whatever epoch: an owner is a
 * flight's own random value, and a flight whose `begin` timed out never learnt its epoch.
 */
const RELEASE = `
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * The token store in Redis (single or Cluster). Every key of a user shares the `{userId}` hash tag,
 * so each script and each MGET touches one slot (keys.ts). Entry encoding:
 * `"<epoch>|<beganAtMs>|" + AES-GCM sealed token`, the key name and header bound as AAD, so a value
 * copied under another key or given a newer epoch header does not open.
 *
 * A hit is ONE round trip, `MGET epoch tombstone entry`, a byte comparison of the entry's epoch
 * header and one AES-GCM open. Throws whatever Redis throws; the outage guard decides what that means.
 */
export function createRedisTokenStore(options: RedisTokenStoreOptions): TokenStore & {
  readonly keys: KeyScheme;
} {
  // Redis and Cluster share the command API; one view keeps the call sites simple.
  const redis = options.client as Redis;
  // Made once: with a Buffer, each cipher would build (and look up) a key object per request.
  const key = createSecretKey(options.encryptionKey);
  const keys = createKeyScheme(options.keyPrefix);
  const run = (
    script: typeof BEGIN,
    keyList: string[],
    args: (string | Buffer | number)[],
  ): Promise<unknown> => runScript(redis, script, keyList, args);

  /** The entry, if written under `epoch` and it opens. */
  function decode(entryKey: string, epoch: Buffer, raw: Buffer): StoredEntry | undefined {
    const a = raw.indexOf(PIPE);
    if (a !== epoch.length || raw.compare(epoch, 0, epoch.length, 0, a) !== 0) {
      return undefined;
    }
    const b = raw.indexOf(PIPE, a + 1);
    if (b < 0) {
      return undefined;
    }
    const token = openToken(
      key,
      `${entryKey}|${raw.toString("latin1", 0, b)}`,
      raw.subarray(b + 1),
    );
    return token && { token, beganAtMs: Number(raw.toString("latin1", a + 1, b)) };
  }

  return {
    keys,

    async read(userId, suffix, withLock = false) {
      const entryKey = keys.entry(userId, suffix);
      const watched = [keys.epoch(userId), keys.tombstone(userId), entryKey];
      if (withLock) {
        watched.push(keys.lock(userId, suffix));
      }
      const seen = await redis.mgetBuffer(watched);
      const epoch = seen[0] ?? null;
      const raw = seen[2] ?? null;
      const lock = seen[3] ?? null;
      const epochText = epoch ? epoch.toString("latin1") : "";
      return {
        epoch: epochText,
        deleted: seen[1] !== null && seen[1] !== undefined,
        entry: epoch && raw ? decode(entryKey, epoch, raw) : undefined,
        lockedByOther:
          lock !== null &&
          epochText !== "" &&
          lock.length > epochText.length &&
          lock.toString("latin1", lock.length - epochText.length - 1) === `|${epochText}`,
      };
    },

    async begin(userId, suffix, owner) {
      const entryKey = keys.entry(userId, suffix);
      // Buffers: the entry holds sealed bytes.
      const [epoch, locked, beganAtMs, raw] = (await runScript(
        redis,
        BEGIN,
        [keys.epoch(userId), keys.lock(userId, suffix), entryKey],
        [owner, options.lockTtlMs, EPOCH_TTL_MS],
        "buffer",
      )) as [Buffer, number, Buffer, Buffer | undefined];
      return {
        epoch: epoch.toString("latin1"),
        locked: locked === 1,
        beganAtMs: Number(beganAtMs.toString("latin1")),
        written: raw !== undefined && raw !== null,
        entry: raw ? decode(entryKey, epoch, raw) : undefined,
      };
    },

    async write(userId, suffix, { epoch, beganAtMs, token, ttlMs, owner }) {
      const entryKey = keys.entry(userId, suffix);
      const header = `${epoch}|${beganAtMs}`;
      const value =
        ttlMs > 0
          ? Buffer.concat([
              Buffer.from(`${header}|`, "latin1"),
              sealToken(key, `${entryKey}|${header}`, token),
            ])
          : "";
      const stored = await run(
        PUT,
        [keys.epoch(userId), entryKey, keys.index(userId), keys.lock(userId, suffix)],
        [
          epoch,
          value,
          Math.max(ttlMs, 0),
          owner === undefined ? "" : `${owner}|${epoch}`,
          suffix,
          EPOCH_TTL_MS,
        ],
      );
      return stored === 1;
    },

    async release(userId, suffix, owner) {
      // EVAL, not EVALSHA: a release is rare (a failed mint, begin or write), so Redis may not
      // know the script yet, and the fallback after NOSCRIPT would be sent only once that answer
      // arrives. A release sent while Redis is paused must be on the wire already, right behind
      // the begin it undoes, for Redis to run it as soon as it resumes.
      await redis.eval(RELEASE, 1, keys.lock(userId, suffix), owner);
    },

    async invalidate(userId, tombstone) {
      const revoke = (options.revokeClient ?? options.client) as Redis;
      const members = await revoke.smembers(keys.index(userId));
      await runScript(
        revoke,
        INVALIDATE,
        [
          keys.epoch(userId),
          keys.tombstone(userId),
          keys.index(userId),
          ...members.map((suffix) => keys.entry(userId, suffix)),
        ],
        [EPOCH_TTL_MS, tombstone ? "1" : "0", TOMBSTONE_TTL_MS],
      );
      // Recorded only once a replica has it, where the topology has replicas: a failover must
      // not bring the pre-revoke epoch (or a deleted user without its tombstone) back.
      await awaitReplicaAck(revoke, keys.epoch(userId));
    },

    async isDeleted(userId) {
      return (await redis.exists(keys.tombstone(userId))) === 1;
    },

    async isReady() {
      return (await redis.ping()) === "PONG";
    },

    async close() {
      // The client belongs to whoever created it (see createRedisTokenCache).
    },
  };
}
