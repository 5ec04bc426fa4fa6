import { randomUUID } from "node:crypto";

/**
 * The emulator's whole state, in memory. Every method is synchronous on purpose: Node runs one of
 * them at a time, so concurrent requests on one identity (issue while revoke while delete) see a
 * consistent order without locks.
 */
export interface IdentityRecord {
  readonly id: string;
  readonly createdAt: number;
  /** The latest revoke (epoch ms). */
  revokedAt?: number;
  deletedAt?: number;
}

export interface IdentityStore {
  create(now: number): IdentityRecord;
  get(id: string): IdentityRecord | undefined;
  revoke(id: string, now: number): void;
  delete(id: string, now: number): void;
}

export function createIdentityStore(resourceId: string): IdentityStore {
  // Deleted identities stay as tombstones: the emulator answers 404 for them, and introspection of
  // their tokens says "deleted" rather than "invalid".
  const identities = new Map<string, IdentityRecord>();
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
  };
}

/**
 * Revocation works on whole seconds, the grain of a token's `iat`: a token is revoked when it was
 * issued in or before the second of its identity's latest revoke. A token issued AFTER a revoke but
 * within the same second therefore gets the next second as its `iat` (see `issuedAtSeconds`), so it
 * stays active, and no per-token state is needed.
 */
export function isRevoked(identity: IdentityRecord, iatSeconds: number): boolean {
  return identity.revokedAt !== undefined && iatSeconds <= Math.floor(identity.revokedAt / 1000);
}

/**
 * The `iat` of a token minted now. Two tokens of one identity, scopes and second are byte-identical
 * (RS256 signatures are deterministic), so a token minted just after a revoke must not share the
 * revoke's second with one minted just before it: it is dated one second on (at most 1 s ahead).
 */
export function issuedAtSeconds(identity: IdentityRecord | undefined, now: number): number {
  const seconds = Math.floor(now / 1000);
  if (identity?.revokedAt !== undefined && seconds === Math.floor(identity.revokedAt / 1000)) {
    return seconds + 1;
  }
  return seconds;
}
