import type { Logger } from "../logger.js";
import { onTopologyChange, ReplicaAckError, type RedisClient } from "../redis/client.js";
import { createBreaker } from "./breaker.js";
import { createSingleflight } from "./singleflight.js";
import type { EntryRead, StoredEntry, TokenStore } from "./token-store.js";

/** After this many Redis failures in a row, reads and writes skip Redis for BREAKER_OPEN_MS. */
export const BREAKER_FAILURES = 5;
export const BREAKER_OPEN_MS = 1000;
/** Users whose invalidation could not be recorded, remembered for replay (oldest dropped beyond). */
export const MAX_PENDING_INVALIDATIONS = 100_000;
/** Pause between replay attempts while invalidations are pending. */
export const REPLAY_EVERY_MS = 500;

export interface OutageGuardOptions {
  /** The client the store uses: its status and events tell when the connection was lost. */
  client: RedisClient;
  logger: Logger;
  /** Clock for the breaker. @default Date.now */
  now?: () => number;
  /** The breaker opened: Redis is skipped for BREAKER_OPEN_MS (metrics). */
  onBreakerOpen?: () => void;
}

/** Thrown instead of sending a command when Redis is known to be unusable right now. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}

/**
 * Wraps the Redis token store with what keeps the cache correct and cheap through Redis trouble
 * (docs/caching.md, "When Redis is unavailable"):
 *
 * - Breaker: after repeated failures, reads and writes skip Redis for a moment (a miss costs no
 *   command timeout). Invalidations are NEVER skipped: each one tries Redis (bounded by the
 *   client's command timeout), because a revoke may only be confirmed once Redis recorded it.
 * - Journal: an invalidation Redis did not record is remembered and replayed (on reconnect, on a
 *   timer, before the next read) until Redis takes it; the store's `invalidate` still throws, so
 *   the revoke is reported unconfirmed. While a user is journaled, this instance neither reads nor
 *   writes that user's entries, and answers a journaled delete itself.
 * - Fence: after this instance lost an established connection or its breaker opened, or a Redis
 *   Cluster's topology changed under it (a node connection lost, another primary for a slot), it
 *   serves only entries begun after it regained Redis (Redis TIME), so neither a revoke another
 *   instance could not record nor one a failover lost can leak a pre-revoke entry through it.
 */
export function guardAgainstOutages(store: TokenStore, options: OutageGuardOptions): TokenStore {
  const { client, logger } = options;
  const breaker = createBreaker({
    failureThreshold: BREAKER_FAILURES,
    openMs: BREAKER_OPEN_MS,
    now: options.now,
  });
  /** userId -> invalidation not yet recorded in Redis (insertion order = age). */
  const journal = new Map<string, { tombstone: boolean }>();
  let needsFence = false;
  /** Counts the losses that asked for a fence: one during a fence's TIME call asks for another. */
  let fenceRequests = 0;
  /** Entries begun before this Redis time (ms) are not served by this instance. */
  let fenceMs = 0;
  let wasReady = client.status === "ready";
  // One fence and one replay at a time; a settled one is forgotten, so the next call starts anew.
  const fenceCall = createSingleflight<boolean>();
  const replayCall = createSingleflight<void>();
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
      askForFence();
      wasReady = false;
    }
  };
  client.on("ready", onReady);
  client.on("close", onClose);
  client.on("end", onClose);
  // A Cluster emits no `close` when one node's connection drops, and a failover to a replica that
  // missed the latest writes may have lost a revoke's epoch bump or tombstone (the revoke itself
  // waits for a replica, see awaitReplicaAck, but another instance's may have been unconfirmed).
  const stopWatching = onTopologyChange(client, (why) => {
    if (!needsFence) {
      logger.warn(
        { why },
        "token cache: the Redis Cluster changed under this instance; tokens cached before now are not served from here",
      );
    }
    askForFence();
  });

  function askForFence(): void {
    needsFence = true;
    fenceRequests++;
  }

  function failure(error: unknown, what: string): void {
    logger.debug(
      { err: { message: (error as Error)?.message }, op: what },
      "token cache: redis call failed",
    );
    if (breaker.failure()) {
      askForFence();
      options.onBreakerOpen?.();
      logger.warn(
        { openMs: BREAKER_OPEN_MS },
        "token cache: redis keeps failing; serving straight from ACS for now",
      );
    }
  }

  function remember(userId: string, tombstone: boolean): void {
    const pending = journal.get(userId);
    if (pending) {
      pending.tombstone ||= tombstone;
    } else {
      if (journal.size >= MAX_PENDING_INVALIDATIONS) {
        journal.delete(journal.keys().next().value as string);
        logger.error(
          { maxPendingInvalidations: MAX_PENDING_INVALIDATIONS },
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
        // recover() schedules the next round itself while users stay journaled.
        void recover();
      } else {
        scheduleRetry();
      }
    }, REPLAY_EVERY_MS);
    retryTimer.unref();
  }

  /** Record `userId`'s invalidation (merged with a journaled one); forget the journal entry if it was replayed. */
  async function record(userId: string, tombstone: boolean): Promise<void> {
    const pending = journal.get(userId);
    await store.invalidate(userId, tombstone || pending?.tombstone === true);
    if (pending && journal.get(userId) === pending) {
      journal.delete(userId);
    }
  }

  /**
   * Set the fence if one is due (only then may reads go through), then replay the journal in the
   * background. Resolves whether the fence is in place: a journaled user whose invalidation still
   * cannot be recorded (Redis refusing it, or no replica acknowledging it) stays journaled, and
   * only that user's reads wait for it; the other users' are served.
   */
  async function recover(): Promise<boolean> {
    if (!(await fence())) {
      return false;
    }
    void replay();
    return true;
  }

  /**
   * Sets the fence at Redis's time, one call at a time; a read waits for this alone (one round
   * trip), never for a replay. A loss reported while TIME was in flight asks again: the fence must
   * postdate every loss it answers for.
   */
  function fence(): Promise<boolean> {
    return fenceCall.run("fence", async () => {
      try {
        while (needsFence) {
          const asked = fenceRequests;
          const [seconds, micros] = await client.time();
          fenceMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
          if (fenceRequests === asked) {
            needsFence = false;
          }
        }
        breaker.success();
        return true;
      } catch (error) {
        failure(error, "recover");
        scheduleRetry();
        return false;
      }
    });
  }

  /** Records every journaled invalidation it can, one replay at a time. */
  function replay(): Promise<void> {
    const run = replayCall.run("replay", async () => {
      try {
        const waiting = journal.size;
        const batch: Promise<void>[] = [];
        for (const userId of [...journal.keys()]) {
          // Each user on its own: one that cannot be recorded yet keeps its entry (and is retried).
          batch.push(record(userId, false).catch((error: unknown) => unrecorded(error, "replay")));
          if (batch.length >= 32) {
            await Promise.all(batch.splice(0));
          }
        }
        await Promise.all(batch);
        if (waiting > 0 && journal.size < waiting) {
          logger.info(
            { replayed: waiting - journal.size, waiting: journal.size },
            "token cache: pending invalidations recorded",
          );
        }
      } catch (error) {
        unrecorded(error, "replay");
      }
    });
    // Once it settled (and was forgotten), the timer may ask for the next round.
    void run.then(scheduleRetry);
    return run;
  }

  /**
   * An invalidation Redis did not record. It never counts toward the breaker: invalidations run on
   * the revoke connection, where each `WAIT` for a lagging replica holds the ones behind it (20
   * revokes, or their replay, end in timeouts there while Redis answers reads at once). A Redis
   * that is really down fails the reads too, and they open the breaker themselves.
   */
  function unrecorded(error: unknown, what: string): void {
    logger.debug(
      { op: what, err: { message: (error as Error)?.message } },
      error instanceof ReplicaAckError
        ? "token cache: " + error.message
        : "token cache: an invalidation was not recorded",
    );
  }

  /** Begun before the fence: not served by this instance. */
  const fenced = (entry: StoredEntry) => fenceMs > 0 && !(entry.beganAtMs >= fenceMs);

  /** Throws rather than send a command when Redis is known to be unusable. */
  async function assertUsable(): Promise<void> {
    if (closed || client.status !== "ready" || !breaker.claim()) {
      throw new StoreUnavailableError("redis is not usable right now");
    }
    // Only the fence gates every read: a journaled user's own reads are held back in `read`.
    if (needsFence && !(await recover())) {
      throw new StoreUnavailableError("redis is back but this instance has not caught up yet");
    }
  }

  /**
   * Releases a lock this instance took. Not held back by an open breaker or a fence due: it deletes
   * only this flight's own lock and serves nothing, and a lock left behind makes every other
   * instance's miss for the key wait up to its life. A failure does not count toward the breaker
   * (it is sent when the breaker may already have opened, after a begin or write that failed).
   */
  async function release(userId: string, suffix: string, owner: string): Promise<void> {
    if (closed || client.status !== "ready") {
      throw new StoreUnavailableError("redis is not connected");
    }
    await store.release(userId, suffix, owner);
  }

  async function guarded<T>(what: string, call: () => Promise<T>): Promise<T> {
    await assertUsable();
    try {
      const result = await call();
      breaker.success();
      return result;
    } catch (error) {
      failure(error, what);
      throw error;
    }
  }

  return {
    async read(userId, suffix, withLock) {
      const pending = journal.get(userId);
      if (pending?.tombstone) {
        return { epoch: "", deleted: true, entry: undefined, lockedByOther: false };
      }
      if (pending) {
        throw new StoreUnavailableError("this user's invalidation is not recorded yet");
      }
      const read: EntryRead = await guarded("read", () => store.read(userId, suffix, withLock));
      if (read.entry && fenced(read.entry)) {
        return { ...read, entry: undefined };
      }
      return read;
    },

    async begin(userId, suffix, owner) {
      let sent = false;
      let begun;
      try {
        begun = await guarded("begin", () => {
          sent = true;
          return store.begin(userId, suffix, owner);
        });
      } catch (error) {
        if (sent) {
          // A begin that timed out still runs when Redis answers again (a pause, a slow moment),
          // and takes a lock this flight will never write under: every other instance's miss for
          // the key would wait for it, up to its life. Sent now on the same connection, this
          // release runs right after it.
          void release(userId, suffix, owner).catch(() => undefined);
        }
        throw error;
      }
      // The read's rules apply to an entry handed back here too. No lock was taken with it, so
      // the caller then mints without one and replaces it (the write still checks the epoch).
      if (begun.entry && (fenced(begun.entry) || journal.has(userId))) {
        return { ...begun, entry: undefined };
      }
      return begun;
    },
    write: (userId, suffix, write) => guarded("write", () => store.write(userId, suffix, write)),
    release,

    async invalidate(userId, tombstone) {
      // Never skipped for an open breaker or a pending replay: only what Redis recorded counts,
      // and the client's command timeout bounds the attempt.
      try {
        if (closed) {
          throw new StoreUnavailableError("the token cache is closed");
        }
        await record(userId, tombstone);
        breaker.success();
      } catch (error) {
        unrecorded(error, "invalidate");
        remember(userId, tombstone);
        throw error;
      }
    },

    async isDeleted(userId) {
      const pending = journal.get(userId);
      if (pending) {
        return pending.tombstone;
      }
      return guarded("isDeleted", () => store.isDeleted(userId));
    },

    async isReady() {
      if (closed || client.status !== "ready" || !breaker.canTry()) {
        return false;
      }
      try {
        return await store.isReady();
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
      stopWatching();
      await store.close();
    },
  };
}
