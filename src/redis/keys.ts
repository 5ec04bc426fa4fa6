/**
 * Key naming for every store that writes to Redis (token cache, rate limiter, identity mappings),
 * so all of them follow one layout and ONE escaping rule for user-controlled parts.
 *
 *   REDIS_KEY_PREFIX + "tc1:" + <namespace fingerprint> + ":"   the token cache (see cache/keys.ts)
 *   REDIS_KEY_PREFIX + "rl:"                                   the rate limiter's counters
 *   REDIS_KEY_PREFIX + "map:" + <ACS endpoint hash> + ":"      the self-service identity mappings
 *
 * The rule: a user-controlled part (a user id, a caller key, a subject) enters a key only through
 * `hashTag`, which wraps it in `{...}` after percent-encoding "{", "}" and "%". Redis Cluster hashes
 * the text between the first "{" and the next "}", so an unescaped "}" in the value would end the
 * tag early and put the keys of two different users in one slot, or let one value's keys collide
 * with another's. Encoding "%" as well keeps the mapping one-to-one. Values without these three
 * characters (every ACS id, every hashed caller key) are written unchanged, so keys written before
 * this rule existed keep their names.
 */

const NEEDS_ESCAPE = /[{}%]/;

/** Percent-encodes "{", "}" and "%": the one escaping rule for a user-controlled key part. */
export function escapeKeyPart(value: string): string {
  return NEEDS_ESCAPE.test(value)
    ? value.replace(/[{}%]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    : value;
}

/** `{value}` with `value` escaped: every key of one user/caller/subject shares one Cluster slot. */
export function hashTag(value: string): string {
  return `{${escapeKeyPart(value)}}`;
}

/** A prefix is operator-controlled, but a brace in it would become every key's hash tag. */
export function assertKeyPrefix(prefix: string): string {
  if (/[{}]/.test(prefix)) {
    throw new Error("a Redis key prefix must not contain { or }");
  }
  return prefix;
}

/** Where each store's keys start, from REDIS_KEY_PREFIX. */
export function tokenCacheKeyPrefix(redisKeyPrefix: string, fingerprint: string): string {
  return assertKeyPrefix(`${redisKeyPrefix}tc1:${fingerprint}:`);
}

export function rateLimitKeyPrefix(redisKeyPrefix: string): string {
  return assertKeyPrefix(`${redisKeyPrefix}rl:`);
}

/** `endpointHash`: a short hash of the ACS endpoint host (a key rotation keeps the identities). */
export function mappingKeyPrefix(redisKeyPrefix: string, endpointHash: string): string {
  return assertKeyPrefix(`${redisKeyPrefix}map:${endpointHash}:`);
}
