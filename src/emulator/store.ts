import { randomUUID } from "node:crypto";

/**
 * The emulator's whole state, in memory. Every method is synchronous on purpose: Node runs one of
 * them at a time, so concurrent requests on one identity (issue while revoke while delete) see a
 * consistent order without locks.
 */
export interface IdentityRecord {
  readonly id: string;
  readonly createdAt: number;
  /** The latest revoke (epoch ms): tokens issued strictly before it are inactive. */
  revokedAt?: number;
  deletedAt?: number;
}

/** What the store remembers of a minted token, to answer introspection exactly. */
export interface TokenRecord {
  /** undefined for a Teams user token (no ACS identity to revoke or delete). */
  identityId?: string;
  /** Epoch ms, finer than the JWT's `iat` (seconds), so a token issued in the same second as a
   * revoke but after it is told apart from one issued before it. */
  issuedAt: number;
  expiresAt: number;
}

export type TokenState =
  { active: true } | { active: false; reason: "expired" | "revoked" | "deleted" | "invalid" };

export interface IdentityStore {
  create(now: number): IdentityRecord;
  get(id: string): IdentityRecord | undefined;
  revoke(id: string, now: number): void;
  delete(id: string, now: number): void;
  /** `key`: the token's signature part, unique per token. */
  recordToken(key: string, record: TokenRecord, now: number): void;
  tokenState(key: string, now: number): TokenState;
}

/** How often (by the emulator's clock) expired token records are dropped. */
const SWEEP_INTERVAL_MS = 60_000;

export function createIdentityStore(resourceId: string): IdentityStore {
  // Deleted identities stay as tombstones: the emulator answers 404 for them, and introspection of
  // their tokens says "deleted" rather than "invalid".
  const identities = new Map<string, IdentityRecord>();
  const tokens = new Map<string, TokenRecord>();
  let lastSweep = 0;

  const sweep = (now: number) => {
    if (now - lastSweep < SWEEP_INTERVAL_MS) {
      return;
    }
    lastSweep = now;
    for (const [key, record] of tokens) {
      if (record.expiresAt <= now) {
        tokens.delete(key);
      }
    }
  };

  return {
    create(now) {
      // The user part has the GUID shape of the real service's ids (ACS-WIRE-FACTS.md).
      const record: IdentityRecord = { id: `8:acs:${resourceId}_${randomUUID()}`, createdAt: now };
      identities.set(record.id, record);
      return record;
    },
    get(id) {
      return identities.get(id);
    },
    revoke(id, now) {
      const record = identities.get(id);
      if (record) {
        record.revokedAt = now;
      }
    },
    delete(id, now) {
      const record = identities.get(id);
      if (record && record.deletedAt === undefined) {
        record.deletedAt = now;
      }
    },
    recordToken(key, record, now) {
      sweep(now);
      tokens.set(key, record);
    },
    tokenState(key, now) {
      const token = tokens.get(key);
      if (!token) {
        // Not minted by this process, or swept after its expiry (the caller tells those apart by
        // the verified `exp`): state lives in memory only.
        return { active: false, reason: "invalid" };
      }
      const identity =
        token.identityId === undefined ? undefined : identities.get(token.identityId);
      if (identity?.deletedAt !== undefined) {
        return { active: false, reason: "deleted" };
      }
      if (identity?.revokedAt !== undefined && token.issuedAt < identity.revokedAt) {
        return { active: false, reason: "revoked" };
      }
      if (token.expiresAt <= now) {
        return { active: false, reason: "expired" };
      }
      return { active: true };
    },
  };
}
