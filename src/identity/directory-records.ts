import { Counter, type Registry } from "prom-client";
import {
  DirectoryBusyError,
  DirectoryConflictError,
  DirectoryInputError,
  DirectoryRecordError,
  MAX_TOUCHES,
  type Directory,
  type DirectoryIdentity,
  type IdentityOrigin,
} from "../directory/index.js";
import { createBackgroundRetries } from "../background-retries.js";
import { DomainError, invalidInput, notFound } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Actor } from "../tokens/upstream-budget.js";
import type { IdentityDirectory } from "./identity-directory.js";

/** How an actor is named in the directory's events: never a token, a key or a display name. */
export function actorLabel(actor: Actor): string {
  return actor.isAdmin ? `admin:${actor.subject ?? actor.key}` : "self";
}

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** A directory failure as the domain's error (graphql/errors.ts maps the kinds to codes). */
export function directoryError(error: unknown): unknown {
  if (error instanceof DomainError) {
    return error;
  }
  if (error instanceof DirectoryInputError) {
    return new DomainError("invalid-input", error.message, { reason: error.code });
  }
  if (error instanceof DirectoryConflictError) {
    return invalidInput("The external id already belongs to another live identity.", "externalId");
  }
  if (error instanceof DirectoryBusyError) {
    return new DomainError(
      "upstream-unavailable",
      "An identity for this external id is being created by another request. Try again.",
      {},
      { cause: error },
    );
  }
  return new DomainError(
    "upstream-unavailable",
    "The identity directory is unavailable. Try again.",
    {},
    { cause: error },
  );
}

/**
 * The directory as the token services use it. The rule for a write that follows a successful ACS
 * call: ACS is the source of truth for whether the identity exists, so a directory write that fails
 * never turns that success into an error for the caller (a retry would repeat the ACS change). It
 * is logged at error with the user id and counted (`acsgw_directory_write_failures_total`); the
 * identity is imported again at the next start if it is a self-service mapping, or by an operator
 * from the log line. Writes the caller does not need the answer of (a token minted at ACS, a
 * revocation, a deletion, the record of `issueToken`'s new user) run in the background, so no
 * request waits for the directory, its first open included; `settled()` awaits them (shutdown,
 * tests).
 */
export interface DirectoryRecords extends IdentityDirectory {
  /** Records an identity created at ACS (no external id); the record even if the write failed. */
  created(input: {
    id: string;
    displayName?: string | undefined;
    origin: IdentityOrigin;
    actor: Actor;
  }): Promise<DirectoryIdentity>;
  /**
   * The identity for `externalId`, `create` called once across every instance on the database.
   * The directory's errors before ACS are thrown as domain errors (nothing was created); a record
   * that failed after ACS created the identity is logged and its identity returned.
   */
  createOnce(
    input: {
      externalId: string;
      displayName?: string | undefined;
      origin: IdentityOrigin;
      actor: Actor;
    },
    create: () => Promise<string>,
    discard: (userId: string) => Promise<void>,
  ): Promise<{ identity: DirectoryIdentity; created: boolean }>;
  /**
   * Background writes: each returns a promise that never rejects (a failure is logged and
   * counted), which a caller that must see the write (self-service forgetting a gone identity)
   * awaits and the others ignore.
   */
  /** `issueToken` without a user id, or a self-service caller without an external id, made this. */
  createdInBackground(input: { id: string; origin: IdentityOrigin; actor: Actor }): Promise<void>;
  /**
   * A token was minted at ACS for `userId` (never called on a cache hit). An identity the
   * directory does not know yet is recorded with `origin` (who asked: an admin or the caller).
   * Written with the other mints of its second (TOUCH_BATCH_MS); the promise settles with that
   * write's first attempt.
   */
  tokenMinted(userId: string, origin: IdentityOrigin): Promise<void>;
  /** `tokens.revoked`. */
  revoked(userId: string, actor: Actor): Promise<void>;
  /** `identity.deleted` (also for an identity ACS says is gone). */
  deleted(userId: string, actor: Actor | "gateway"): Promise<void>;
  /** Is `userId` a live identity the directory holds under an external id? */
  holdsByExternalId(userId: string): Promise<boolean>;
  /** Resolves once every background write started so far has ended (its retries included). */
  settled(): Promise<void>;
  /**
   * Ends the retries (shutdown): each write still waiting is logged at error with its user id and
   * counted, as a write that failed.
   */
  stop(): void;
}

/** How long a mint's `lastTokenIssuedAt` waits for others to share its statement. */
export const TOUCH_BATCH_MS = 1000;
/** Pauses between the attempts of a background write that failed (the last one repeats). */
const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 16_000, 30_000];
/** How long a background write is retried before it is given up (logged, counted). */
const RETRY_FOR_MS = 15 * 60_000;
/** At most this many writes wait to retry; beyond it a failed write is given up at once. */
const RETRYING_MAX = 10_000;

export function createDirectoryRecords(deps: {
  directory: Directory;
  logger: Logger;
  registry?: Registry;
  now?: () => number;
}): DirectoryRecords {
  const { directory, logger } = deps;
  const now = deps.now ?? Date.now;
  const failures = new Counter({
    name: "acsgw_directory_write_failures_total",
    help: "Directory writes after a successful ACS call that failed (the ACS change stands; the user id is in the error log line).",
    labelNames: ["operation"] as const,
    registers: deps.registry ? [deps.registry] : [],
  });
  function failed(operation: string, userId: string, error: unknown): void {
    failures.inc({ operation });
    logger.error(
      { operation, userId, err: errorText(error) },
      "the identity directory could not record a change ACS made; the ACS change stands",
    );
  }

  /** Writes waiting to retry: a database paused or restarting for a few minutes loses no event. */
  const retries = createBackgroundRetries({
    delaysMs: RETRY_DELAYS_MS,
    forMs: RETRY_FOR_MS,
    max: RETRYING_MAX,
  });

  /**
   * A write the caller does not wait for. A failure is retried (RETRY_DELAYS_MS, for up to
   * RETRY_FOR_MS). The returned promise settles with the FIRST attempt (a caller that must see the
   * write awaits that, never the retries); `settled()` waits for the retries too. Given up (time,
   * RETRYING_MAX writes already waiting, or `stop()`), it is logged at error with the user id and
   * counted.
   */
  async function background(
    operation: string,
    userIds: string | readonly string[],
    write: () => Promise<unknown>,
  ): Promise<void> {
    const ids = typeof userIds === "string" ? [userIds] : userIds;
    await retries.run({
      // Each try starts after this turn's I/O callbacks, so after the answer the caller is
      // waiting for has been written. The embedded PGlite runs a statement on this thread: begun
      // at once, its UPDATE ran between the ACS answer and the response, and a cache miss's answer
      // took about 1.5 ms longer (the bench's one-connection miss row).
      attempt: () => new Promise((resolve) => setImmediate(resolve)).then(write),
      waiting: () => {
        for (const userId of ids) {
          logger.warn(
            { operation, userId },
            "the identity directory could not record a change ACS made yet; retrying in the background",
          );
        }
      },
      end(how, error) {
        if (how !== "at-once" && how !== "done") {
          for (const userId of ids) {
            failed(operation, userId, error);
          }
        }
      },
    });
  }

  /**
   * The mints of the last TOUCH_BATCH_MS, written together: one statement for up to MAX_TOUCHES
   * identities instead of one per mint. On the embedded PGlite a statement costs this thread
   * about a millisecond of CPU, which delayed the next request's answer (the bench's miss row at
   * one connection); on PostgreSQL it is a round trip per mint. The cost: `lastTokenIssuedAt`
   * shows a mint up to TOUCH_BATCH_MS late, and a crash loses the last TOUCH_BATCH_MS of times.
   */
  interface TouchBatch {
    touches: Map<string, { origin: IdentityOrigin; at: number }>;
    /** Settles with the batch's first attempt. */
    written: Promise<void>;
    /** Writes it now (a full batch, `settled()`, `stop()`), not when its timer fires. */
    flush(): void;
  }
  /** The batch new mints join; flushed ones stay in `pendingBatches` until their first attempt. */
  let touchBatch: TouchBatch | undefined;
  const pendingBatches = new Set<TouchBatch>();

  function openTouchBatch(): TouchBatch {
    const touches: TouchBatch["touches"] = new Map();
    let flushed!: () => void;
    const start = new Promise<void>((resolve) => (flushed = resolve));
    const batch: TouchBatch = {
      touches,
      written: start.then(() =>
        background("touch", [...touches.keys()], async () => {
          const unknown = await directory.touchLastTokenIssuedAt(
            [...touches].map(([id, { at }]) => ({ id, at })),
          );
          if (unknown.length > 0) {
            // Unknown here, though ACS just minted for them: identities made before the directory
            // existed (or on an instance whose record has not landed yet). Recorded on first
            // sight without an event, as `import` does; a late `created` of the same identity
            // still writes its identity.created (recordCreated).
            await directory.import(
              unknown.map((id) => ({
                id,
                origin: touches.get(id)!.origin,
                lastTokenIssuedAt: new Date(touches.get(id)!.at),
              })),
            );
          }
        }),
      ),
      flush() {
        clearTimeout(timer);
        if (touchBatch === batch) {
          touchBatch = undefined;
        }
        flushed();
      },
    };
    const timer = setTimeout(() => batch.flush(), TOUCH_BATCH_MS);
    timer.unref();
    // Counted as under way from now, so `settled()` and shutdown wait for it.
    pendingBatches.add(batch);
    void batch.written.finally(() => pendingBatches.delete(batch));
    return batch;
  }

  /** What the caller gets when the write failed: the facts the gateway knows. */
  const unrecorded = (
    id: string,
    origin: IdentityOrigin,
    externalId: string | null,
    displayName: string | null,
  ): DirectoryIdentity => ({
    id,
    externalId,
    displayName,
    origin,
    createdAt: new Date(now()),
    lastTokenIssuedAt: null,
    deletedAt: null,
  });

  const mapped = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (error) {
      throw directoryError(error);
    }
  };

  return {
    get: (id) => mapped(() => directory.get(id)),
    getByExternalId: (externalId) => mapped(() => directory.getByExternalId(externalId)),
    list: (args) => mapped(() => directory.list(args)),
    async updateDisplayName(actor, id, displayName) {
      const updated = await mapped(() =>
        directory.updateDisplayName(id, displayName, actorLabel(actor)),
      );
      if (!updated) {
        throw notFound();
      }
      return updated;
    },

    async created({ id, displayName, origin, actor }) {
      try {
        const { identity } = await directory.recordCreated({
          id,
          displayName: displayName ?? null,
          origin,
          actor: actorLabel(actor),
        });
        return identity;
      } catch (error) {
        failed("created", id, error);
        return unrecorded(id, origin, null, displayName ?? null);
      }
    },

    async createOnce({ externalId, displayName, origin, actor }, create, discard) {
      try {
        return await directory.createOnce(
          { externalId, displayName: displayName ?? null, origin, actor: actorLabel(actor) },
          create,
          { discard },
        );
      } catch (error) {
        if (error instanceof DirectoryRecordError) {
          // ACS made it; the directory could not keep it. Returned, logged for an import.
          failed("created", error.userId, error);
          return {
            identity: unrecorded(error.userId, origin, externalId, displayName ?? null),
            created: true,
          };
        }
        // An ACS (or budget) error passes as it is; the directory's own become domain errors.
        throw directoryError(error);
      }
    },

    createdInBackground({ id, origin, actor }) {
      return background("created", id, () =>
        directory.recordCreated({ id, origin, actor: actorLabel(actor) }),
      );
    },
    tokenMinted(userId, origin) {
      const batch = (touchBatch ??= openTouchBatch());
      const at = now();
      const known = batch.touches.get(userId);
      if (known) {
        known.at = Math.max(known.at, at);
      } else {
        batch.touches.set(userId, { origin, at });
      }
      if (batch.touches.size >= MAX_TOUCHES) {
        batch.flush();
      }
      return batch.written;
    },
    revoked(userId, actor) {
      return background("revoked", userId, () =>
        directory.recordRevocation(userId, actorLabel(actor)),
      );
    },
    deleted(userId, actor) {
      return background("deleted", userId, () =>
        directory.markDeleted(userId, actor === "gateway" ? "gateway" : actorLabel(actor)),
      );
    },

    async holdsByExternalId(userId) {
      const identity = await directory.get(userId);
      return identity !== undefined && identity.deletedAt === null && identity.externalId !== null;
    },

    async settled() {
      const batches = [...pendingBatches];
      for (const batch of batches) {
        batch.flush();
      }
      // The batches' writes join the retries only once their first attempt is scheduled.
      await Promise.all(batches.map((batch) => batch.written));
      await retries.settled();
    },
    stop() {
      for (const batch of pendingBatches) {
        batch.flush();
      }
      retries.stop();
    },
  };
}

/**
 * No directory: for services built without one (unit tests of the token path). Records nothing,
 * knows nothing; `createUser` still answers the identity ACS made.
 */
export function noDirectory(now: () => number = Date.now): DirectoryRecords {
  const none = async () => {};
  const record = (
    id: string,
    origin: IdentityOrigin,
    externalId: string | null,
    displayName?: string,
  ) => ({
    id,
    externalId,
    displayName: displayName ?? null,
    origin,
    createdAt: new Date(now()),
    lastTokenIssuedAt: null,
    deletedAt: null,
  });
  return {
    get: async () => undefined,
    getByExternalId: async () => undefined,
    list: async () => ({ edges: [], pageInfo: { hasNextPage: false, endCursor: null } }),
    updateDisplayName: async () => {
      throw notFound();
    },
    created: async ({ id, origin, displayName }) => record(id, origin, null, displayName),
    createOnce: async ({ externalId, origin, displayName }, create) => ({
      identity: record(await create(), origin, externalId, displayName),
      created: true,
    }),
    createdInBackground: none,
    tokenMinted: none,
    revoked: none,
    deleted: none,
    holdsByExternalId: async () => false,
    settled: none,
    stop: () => {},
  };
}
