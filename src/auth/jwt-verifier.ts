import { hash } from "node:crypto";
import {
  createRemoteJWKSet,
  errors,
  jwksCache,
  jwtVerify,
  type ExportedJWKSCache,
  type JWTPayload,
} from "jose";
import { LRUCache } from "lru-cache";
import { AuthError, callerKey, type Caller } from "./caller.js";
import { isDirectoryText } from "../identity/external-id.js";

export interface JwtVerifierOptions {
  jwksUrl: string;
  issuer: string;
  audience: string;
  adminRole: string;
  /** The claim whose (string) value is the caller's external id (`Caller.externalId`). @default "sub" */
  externalIdClaim?: string;
  /** Tolerated clock difference for exp/nbf/iat. @default 30 */
  clockToleranceSeconds?: number;
  /** JWKS fetch timeout. @default 5000 */
  timeoutMs?: number;
  /** Least time between two JWKS fetches caused by unknown `kid`s. @default 30000 */
  cooldownMs?: number;
  /**
   * How many verified tokens are remembered (least recently used dropped first), so a client that
   * sends the same bearer token on every request pays for the signature check once. `0` turns
   * the cache off. @default 10000
   */
  cacheEntries?: number;
  /**
   * Longest a remembered verification is served before the token is checked again in full
   * (which also lets a stale key set be refetched, so a key the issuer withdrew without a
   * rotation stops being honoured within this time plus jose's 10-minute key-set cache).
   * @default 60000
   */
  cacheMaxAgeMs?: number;
  /** The clock for the cache (epoch ms); jose's own checks read Date.now. @default Date.now */
  now?: () => number;
}

export interface JwtVerifier {
  /** The caller behind an `Authorization` header; throws AuthError for anything not acceptable. */
  verify(authorization: string | undefined): Promise<Caller>;
  /** How many verified tokens are remembered now (for tests and metrics). */
  cachedTokens(): number;
}

interface Remembered {
  caller: Caller;
  /** Epoch ms from which the entry may be served (the token's `nbf`, or 0). */
  from: number;
  /** Epoch ms from which it may not: the token's `exp`, or the entry's max age if sooner. */
  until: number;
}

/**
 * Asymmetric algorithms only: `none` and HS* are refused outright, which closes the classic
 * confusion attack (an HS256 token "signed" with the issuer's public key as the HMAC secret).
 */
const ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
];
/** Real bearer tokens are 1-3 KB; a larger header is refused before any parsing or crypto. */
const MAX_HEADER_LENGTH = 8192;
/** `sub` becomes a key part and is shown by `me`; real ones are short (Entra ID: 43 characters). */
const MAX_SUBJECT_LENGTH = 1024;
/** RFC 6750 `b64token`; a JWT only ever uses the base64url alphabet and dots. */
const BEARER = /^Bearer[ ]+([A-Za-z0-9._~+/-]+=*)$/i;

/**
 * Roles from the `roles` claim: an array of strings (Entra ID app roles), or one space-separated
 * string (the OAuth `scope` style some issuers use for custom claims). Anything else, including
 * non-string array members, counts as no role: a malformed claim never grants admin.
 */
function rolesOf(payload: JWTPayload): string[] {
  const roles = payload.roles;
  if (Array.isArray(roles)) {
    return roles.filter((role): role is string => typeof role === "string");
  }
  return typeof roles === "string" ? roles.split(/\s+/).filter(Boolean) : [];
}

/**
 * Failures of the key fetch rather than of the token: a timeout, a refused connection (fetch's
 * TypeError), a non-200 answer or an unparseable key set (jose's generic JOSEError), a key set
 * of the wrong shape. The token may be fine; the caller should retry, not sign in again.
 */
function isKeySetUnavailable(error: unknown): boolean {
  return (
    error instanceof errors.JWKSTimeout ||
    error instanceof errors.JWKSInvalid ||
    error instanceof TypeError ||
    (error instanceof errors.JOSEError && error.code === "ERR_JOSE_GENERIC")
  );
}

/**
 * The verified-token cache's key: SHA-256 of the token, so the cache holds no bearer credential.
 * One-shot `crypto.hash` rather than `createHash()`: no Hash object per request, and so no weak
 * handle for the garbage collector to process in every young-generation pause (BENCHMARKS.md:
 * these pauses set the cache hit's p99).
 */
function tokenHash(token: string): string {
  return hash("sha256", token, "base64url");
}

/**
 * Verified tokens by the SHA-256 of the token (never the token itself: a heap dump shows no
 * credential, and an entry is 43 bytes of key whatever the token's size), least recently used out
 * first. lru-cache keeps recency in typed arrays, so a hit allocates nothing that outlives the
 * request. The Map this replaced ("delete then set" on every hit) had V8 rebuild the Map's table
 * every few hits, and a long-lived Map's new table is allocated straight in the old generation:
 * garbage that brought full mark-compacts, whose pauses set the cache hit's p99.
 */
function createVerifiedCache(capacity: number) {
  // lru-cache needs a bound of at least 1; with capacity 0 nothing is ever set (cacheKey below).
  const entries = new LRUCache<string, Remembered>({ max: Math.max(capacity, 1) });
  return {
    get(key: string, now: number): Caller | undefined {
      const entry = entries.get(key);
      if (!entry) {
        return undefined;
      }
      if (now < entry.from || now >= entry.until) {
        // Expired (or not yet valid): verify in full again, which gives the right refusal.
        entries.delete(key);
        return undefined;
      }
      return entry.caller;
    },
    set(key: string, entry: Remembered): void {
      entries.set(key, entry);
    },
    clear: () => entries.clear(),
    size: () => entries.size,
  };
}

export function createJwtVerifier(options: JwtVerifierOptions): JwtVerifier {
  const now = options.now ?? Date.now;
  const capacity = options.cacheEntries ?? 10_000;
  const maxAgeMs = options.cacheMaxAgeMs ?? 60_000;
  if (!Number.isInteger(capacity) || capacity < 0) {
    throw new TypeError("cacheEntries must be a whole number, 0 or more");
  }
  if (!Number.isFinite(maxAgeMs) || maxAgeMs < 0) {
    throw new TypeError("cacheMaxAgeMs must be a number, 0 or more");
  }
  // jose writes every successful key-set fetch here (`uat`, `jwks`), which is how the verifier
  // learns of a refetch without fetching anything itself.
  const keySet = {} as ExportedJWKSCache;
  // Keys are cached; an unknown kid triggers a refetch (at most once per cooldown), which is how
  // a key rotation at the issuer is picked up without a restart.
  const keys = createRemoteJWKSet(new URL(options.jwksUrl), {
    timeoutDuration: options.timeoutMs ?? 5000,
    cooldownDuration: options.cooldownMs ?? 30_000,
    cacheMaxAge: 10 * 60_000,
    [jwksCache]: keySet,
  });
  const verified = createVerifiedCache(capacity);
  let seenFetch: number | undefined;
  let seenKeys: string | undefined;
  /** Bumped whenever the key set's content changes; a verification that spans a bump is not kept. */
  let generation = 0;

  /**
   * A token verified under a key the issuer has since withdrawn must not be served from memory:
   * when a fetch brought a different key set, everything remembered is dropped.
   */
  function noticeKeySetChange(): void {
    if (keySet.uat === seenFetch) {
      return;
    }
    seenFetch = keySet.uat;
    const content = JSON.stringify(keySet.jwks);
    if (seenKeys !== undefined && content !== seenKeys) {
      verified.clear();
      generation++;
    }
    seenKeys = content;
  }

  return {
    cachedTokens: () => verified.size(),
    async verify(authorization) {
      if (authorization === undefined || authorization === "") {
        throw new AuthError("missing", "Sign in: send an Authorization: Bearer token.");
      }
      if (authorization.length > MAX_HEADER_LENGTH) {
        throw new AuthError("malformed", "The Authorization header is too long.");
      }
      // The common spelling first: a remembered token was checked against BEARER when it was
      // verified, so an exact match of its hash needs no second look at the header's syntax.
      const plain = authorization.startsWith("Bearer ") ? authorization.slice(7) : undefined;
      if (plain !== undefined && capacity > 0) {
        noticeKeySetChange();
        const known = verified.get(tokenHash(plain), now());
        if (known) {
          return known;
        }
      }
      // The scheme is case-insensitive (RFC 9110 section 11.1).
      const match = BEARER.exec(authorization.trim());
      if (!match) {
        throw new AuthError("malformed", "The Authorization header must be 'Bearer <token>'.");
      }
      const token = match[1]!;
      const cacheKey = capacity > 0 ? tokenHash(token) : undefined;
      if (cacheKey !== undefined && token !== plain) {
        noticeKeySetChange();
        const known = verified.get(cacheKey, now());
        if (known) {
          return known;
        }
      }
      const startedIn = generation;
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keys, {
          issuer: options.issuer,
          audience: options.audience,
          algorithms: ALGORITHMS,
          clockTolerance: options.clockToleranceSeconds ?? 30,
          requiredClaims: ["sub", "exp"],
        }));
      } catch (error) {
        noticeKeySetChange();
        // jose's messages are safe (they never quote the token), but they describe why a forgery
        // failed; callers get one of four fixed sentences instead.
        if (error instanceof errors.JWTExpired) {
          throw new AuthError("expired", "The bearer token has expired.");
        }
        if (isKeySetUnavailable(error)) {
          throw new AuthError(
            "unavailable",
            "The issuer's signing keys could not be fetched to check the bearer token. Try again.",
          );
        }
        throw new AuthError("invalid", "The bearer token is not valid for this service.");
      }
      // jose checks that `sub` is present, not that it is a usable string.
      const subject = payload.sub as unknown;
      if (typeof subject !== "string" || subject === "" || subject.length > MAX_SUBJECT_LENGTH) {
        throw new AuthError("invalid", "The bearer token is not valid for this service.");
      }
      const roles = rolesOf(payload);
      // Entra ID's object id: what a Teams token exchange must match (the rights table's rule).
      const objectId =
        typeof payload.oid === "string" && payload.oid !== "" ? payload.oid : undefined;
      // The directory's external id: a string claim the directory takes (1 to 256 printable
      // characters), or none (never a number or an object turned into text: two tokens must not
      // name one person by accident). A longer one is no external id rather than an input error
      // on every self-service call: the caller's identity is then recorded without one.
      const claimed = payload[options.externalIdClaim ?? "sub"] as unknown;
      const externalId =
        typeof claimed === "string" && isDirectoryText(claimed) ? claimed : undefined;
      // Frozen: one remembered caller is handed to many requests.
      const caller: Caller = Object.freeze({
        subject,
        objectId,
        externalId,
        // jwtVerify checked `iss` equals the configured issuer exactly.
        issuer: options.issuer,
        roles: Object.freeze(roles),
        isAdmin: roles.includes(options.adminRole),
        key: callerKey(options.issuer, subject),
      });
      noticeKeySetChange();
      if (cacheKey !== undefined && generation === startedIn) {
        // Served from memory only inside [nbf, exp) and for at most maxAgeMs: never past the
        // token's own expiry, even where jose's clock tolerance would still accept it.
        const at = now();
        verified.set(cacheKey, {
          caller,
          from: typeof payload.nbf === "number" ? payload.nbf * 1000 : 0,
          until: Math.min((payload.exp as number) * 1000, at + maxAgeMs),
        });
      }
      return caller;
    },
  };
}
