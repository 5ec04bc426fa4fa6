import { Cluster } from "ioredis";
import { hashTag, type RedisClient } from "../redis/index.js";

/**
 * The self-service mappings earlier versions kept in Redis, read-only: the SQL store
 * (sql-user-mapping-store.ts) imports a caller from here the first time it sees them, so upgrading
 * a deployment gives no existing caller a second identity. Nothing writes these keys any more;
 * they are left in place (an operator may delete `<REDIS_KEY_PREFIX>map:*` once every caller has
 * been seen, or keep them: they cost nothing).
 *
 * The layout, as earlier versions wrote it (one escaping rule, redis/keys.ts):
 * - `<prefix>s:{subject}`: a confirmed mapping is the bare user id; a reservation is
 *   `~r|<reservation>|<leaseUntil>` and a pending identity `~p|<reservation>|<userId>`. ACS ids
 *   start with `8:`, never with `~`.
 * - `<prefix>u:{userId}`: the subject the identity was created for, kept after removal (the
 *   ownership history).
 */
export interface LegacyMappings {
  /** The caller's identity in Redis, confirmed or pending (a pending one was theirs already). */
  get(subjectKey: string): Promise<string | undefined>;
  /** The subject `userId` was created for, even if since removed. */
  subjectOf(userId: string): Promise<string | undefined>;
  ownsOrOwned(subjectKey: string, userId: string): Promise<boolean>;
  /** Every identity mapped or pending (SCAN, on each primary of a Cluster), for the directory. */
  listUserIds(): AsyncIterable<string>;
}

const RESERVED = "~r|";
const PENDING = "~p|";

/** The identity a subject key's value names, if any (a bare reservation names none). */
function identityIn(value: string | null): string | undefined {
  if (value === null || value.startsWith(RESERVED)) {
    return undefined;
  }
  return value.startsWith(PENDING) ? value.slice(value.indexOf("|", PENDING.length) + 1) : value;
}

/** A literal for SCAN's MATCH: the operator's prefix may hold glob characters. */
function globLiteral(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

export function createLegacyRedisMappings(options: {
  redis: RedisClient;
  /** Prefix of every key, e.g. `acsgw:map:<resource>:` (redis/keys.ts, `mappingKeyPrefix`). */
  keyPrefix: string;
}): LegacyMappings {
  const { redis, keyPrefix } = options;
  const subjectKeyOf = (subjectKey: string) => `${keyPrefix}s:${hashTag(subjectKey)}`;
  const ownerKeyOf = (userId: string) => `${keyPrefix}u:${hashTag(userId)}`;

  return {
    async get(subjectKey) {
      return identityIn(await redis.get(subjectKeyOf(subjectKey)));
    },
    async subjectOf(userId) {
      return (await redis.get(ownerKeyOf(userId))) ?? undefined;
    },
    async ownsOrOwned(subjectKey, userId) {
      return (await redis.get(ownerKeyOf(userId))) === subjectKey;
    },
    async *listUserIds() {
      const nodes = redis instanceof Cluster ? redis.nodes("master") : [redis];
      const match = `${globLiteral(keyPrefix)}s:*`;
      for (const node of nodes) {
        // SCAN in pages of about 500 keys, then their values in one pipeline per page (GETs, not
        // MGET: a Cluster node's keys lie in many slots). Bounded work per round trip.
        for await (const keys of node.scanStream({ match, count: 500 }) as AsyncIterable<
          string[]
        >) {
          if (keys.length === 0) {
            continue;
          }
          const values = (await node.pipeline(keys.map((key) => ["get", key])).exec()) ?? [];
          for (const [error, value] of values) {
            if (error) {
              throw error;
            }
            const userId = identityIn(value as string | null);
            if (userId !== undefined) {
              yield userId;
            }
          }
        }
      }
    },
  };
}
