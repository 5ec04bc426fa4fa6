import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";

/**
 * The emulator's whole state. Every method is synchronous on purpose: Node runs one of them at a
 * time, so concurrent requests on one identity (issue while revoke while delete) see a consistent
 * order without locks, and a persisted state file is never written by two requests at once.
 */
export interface IdentityRecord {
  readonly id: string;
  readonly createdAt: number;
  /** 2025-03-02-preview: the caller's own id mapped to this identity. */
  readonly customId?: string;
  /** The latest revoke's cutoff (epoch ms): tokens issued in or before its second are revoked. */
  revokedAt?: number;
  /**
   * The revokes still propagating (with a revocation delay) and the newest one that has, in the
   * order they were made: see `isRevoked`.
   */
  revocations?: Revocation[];
  deletedAt?: number;
  /** 2025-03-02-preview's `lastTokenIssuedAt` (epoch ms). */
  lastTokenIssuedAt?: number;
}

/** One revoke: tokens issued in or before `cutoff`'s second are revoked from `effectiveAt` on. */
export interface Revocation {
  readonly cutoff: number;
  /** The revoke's time plus the revocation delay (epoch ms, the emulator's clock). */
  readonly effectiveAt: number;
}

export interface IdentityStore {
  create(now: number, customId?: string): IdentityRecord;
  get(id: string): IdentityRecord | undefined;
  /** The live identity mapped to `customId`, if any. */
  byCustomId(customId: string): IdentityRecord | undefined;
  tokenIssued(id: string, now: number): void;
  /**
   * Revokes the tokens issued in or before `cutoff`'s second, effective `revocationDelayMs` after
   * `now` (the time of the request; `cutoff` itself for a plain revoke).
   */
  revoke(id: string, cutoff: number, now?: number): void;
  /** Takes effect at once, whatever the revocation delay: the real service purges on delete. */
  delete(id: string, now: number): void;
  /** Every identity, deleted ones included, in the order they were created. */
  list(): readonly IdentityRecord[];
  /** Forgets every identity and revocation (the signing key stays) and rewrites the state file. */
  reset(): void;
  /** A signing key kept with the state, so tokens of an earlier run still verify. */
  readonly signingKeyPem: string | undefined;
}

const stateSchema = z.object({
  version: z.literal(1),
  resourceId: z.string(),
  signingKeyPem: z.string().optional(),
  identities: z.array(
    z.object({
      id: z.string(),
      createdAt: z.number(),
      customId: z.string().optional(),
      revokedAt: z.number().optional(),
      revocations: z.array(z.object({ cutoff: z.number(), effectiveAt: z.number() })).optional(),
      deletedAt: z.number().optional(),
      // Never written now; files of earlier versions may hold it (read, then dropped at the next save).
      lastTokenIssuedAt: z.number().optional(),
    }),
  ),
});

export interface StoreOptions {
  resourceId: string;
  /** Persist to this JSON file (written atomically: temp file + rename). */
  stateFile?: string;
  /** Used to fill `signingKeyPem` of a NEW state file; an existing file's key wins. */
  newSigningKeyPem?: () => string;
  /**
   * How long a revoke takes to reach the tokens it revokes (the real service may take up to 15
   * minutes). @default 0: at once
   */
  revocationDelayMs?: number;
}

export function createIdentityStore(options: StoreOptions): IdentityStore {
  const { resourceId, stateFile } = options;
  const revocationDelayMs = options.revocationDelayMs ?? 0;
  // Deleted identities stay as tombstones: the emulator answers 404 for them, and introspection of
  // their tokens says "deleted" rather than "invalid".
  const identities = new Map<string, IdentityRecord>();
  let signingKeyPem: string | undefined;

  if (stateFile !== undefined) {
    let text: string | undefined;
    try {
      text = readFileSync(stateFile, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new Error(
          `cannot read the state file ${stateFile} (${(error as NodeJS.ErrnoException).code ?? "error"})`,
        );
      }
    }
    if (text !== undefined) {
      let parsed: z.infer<typeof stateSchema>;
      try {
        parsed = stateSchema.parse(JSON.parse(text));
      } catch {
        throw new Error(`the state file ${stateFile} is not an emulator state file`);
      }
      if (parsed.resourceId !== resourceId) {
        // Its ids name another resource: serving them would answer IdentityNotOwned for all of them.
        throw new Error(
          `the state file ${stateFile} belongs to resource ${parsed.resourceId}, not ${resourceId}`,
        );
      }
      for (const record of parsed.identities) {
        const loaded: IdentityRecord = { ...record };
        if (loaded.revokedAt !== undefined && loaded.revocations === undefined) {
          // A state file of an emulator without revocation delays: its revokes took effect at once.
          loaded.revocations = [{ cutoff: loaded.revokedAt, effectiveAt: 0 }];
        }
        identities.set(record.id, loaded);
      }
      signingKeyPem = parsed.signingKeyPem;
    }
    signingKeyPem ??= options.newSigningKeyPem?.();
  }

  const persist = () => {
    if (stateFile === undefined) {
      return;
    }
    const state: z.infer<typeof stateSchema> = {
      version: 1,
      resourceId,
      signingKeyPem,
      // lastTokenIssuedAt stays in memory (a write per token would cost a file write each): left
      // out here, so it is absent after every restart, not only when nothing was saved since.
      identities: [...identities.values()].map(({ lastTokenIssuedAt: _, ...kept }) => kept),
    };
    mkdirSync(dirname(stateFile), { recursive: true });
    // A crash mid-write must leave the previous state, never half a file: write aside, then rename
    // (atomic within one file system). 0600: the file holds the token signing key.
    const temp = `${stateFile}.${process.pid}.${randomUUID()}.tmp`;
    writeFileSync(temp, JSON.stringify(state), { mode: 0o600 });
    renameSync(temp, stateFile);
  };
  persist();

  return {
    signingKeyPem,
    create(now, customId) {
      // The user part has the GUID shape of the real service's ids (docs/acs-wire-facts.md).
      const record: IdentityRecord = {
        id: `8:acs:${resourceId}_${randomUUID()}`,
        createdAt: now,
        ...(customId === undefined ? {} : { customId }),
      };
      identities.set(record.id, record);
      persist();
      return record;
    },
    get(id) {
      return identities.get(id);
    },
    byCustomId(customId) {
      for (const record of identities.values()) {
        if (record.customId === customId && record.deletedAt === undefined) {
          return record;
        }
      }
      return undefined;
    },
    tokenIssued(id, now) {
      const record = identities.get(id);
      if (record) {
        record.lastTokenIssuedAt = now;
        // Not persisted on its own: an informational field is not worth a disk write per token.
      }
    },
    revoke(id, cutoff, now = cutoff) {
      const record = identities.get(id);
      if (record) {
        record.revokedAt = cutoff;
        // Only the newest revoke in effect matters, and those still propagating: drop the rest.
        const kept = record.revocations ?? [];
        let from = 0;
        kept.forEach((revocation, index) => {
          if (revocation.effectiveAt <= now) {
            from = index;
          }
        });
        record.revocations = [
          ...kept.slice(from),
          { cutoff, effectiveAt: now + revocationDelayMs },
        ];
        persist();
      }
    },
    delete(id, now) {
      const record = identities.get(id);
      if (record && record.deletedAt === undefined) {
        record.deletedAt = now;
        persist();
      }
    },
    list() {
      return [...identities.values()];
    },
    reset() {
      identities.clear();
      persist();
    },
  };
}

/**
 * Revocation works on whole seconds, the grain of a token's `iat`: a token is revoked when it was
 * issued in or before the second of its identity's latest revoke IN EFFECT at `now` (the
 * emulator's clock): a revoke takes effect the revocation delay after it was made, as the real
 * service's take up to 15 minutes to propagate. A token issued AFTER a revoke but within the same
 * second gets the next second as its `iat` (see `issuedAtSeconds`), so it stays active, and no
 * per-token state is needed.
 */
export function isRevoked(identity: IdentityRecord, iatSeconds: number, now: number): boolean {
  let cutoff: number | undefined;
  for (const revocation of identity.revocations ?? []) {
    if (revocation.effectiveAt <= now) {
      cutoff = revocation.cutoff;
    }
  }
  return cutoff !== undefined && iatSeconds <= Math.floor(cutoff / 1000);
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
