import { randomUUID } from "node:crypto";
import { createBackgroundRetries, type RetriedWork } from "../background-retries.js";
import { DomainError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { IdentityProvider } from "./identity-provider.js";
import type { UserMappingStore } from "./user-mapping-store.js";

/**
 * Creates a caller's ACS identity on first use without ever creating one the store cannot record:
 * reserve (store), create (ACS), record (store), confirm (store). See user-mapping-store.ts for
 * what each step writes. Every state this can be left in, and how it is left:
 *
 * - reserved (no identity yet): the creator's lease runs for `leaseMs`, the gateway's request
 *   timeout (HTTP_REQUEST_TIMEOUT_MS), so it outlives a dead creator by at most that. A live
 *   creator renews it while its ACS create call is in flight (when half of it is left), so however
 *   slow that call, no other request takes its reservation over while it can still record; if a
 *   renewal cannot reach the store and the lease runs out all the same, the record (which only
 *   lands on our own reservation) tells, and the identity is deleted: a record never overwrites a
 *   take-over. A live creator whose call failed releases it, and while the store is down keeps
 *   trying in the background until the lease ends (after that the next call takes it over
 *   anyway), so once the store is back the caller is not kept waiting. One background release per
 *   caller, whatever the number of failed calls: a newer failed call's reservation joins it.
 * - The store refuses the reservation: nothing was created; the call fails. The reservation may
 *   have been written after all (a timeout), so it is released as above, unless the store failed
 *   before sending anything (`nothingWritten`).
 * - ACS fails to create: the reservation is released; the call fails.
 * - pending (recorded, not confirmed): the identity is the caller's for every purpose (`get`,
 *   `me`, revoke, delete); the caller's next call, any reader through `currentIdentity`, or any
 *   instance's start-up (`recover`) confirms it. It is never lost and never duplicated.
 * - The record fails: its outcome is unknown (a timed-out statement may still commit), so the
 *   identity is settled before anything is deleted: the reservation is released first (a late
 *   record can then no longer land), then the subject is read. Recorded after all: it is the
 *   caller's, is confirmed, and the call returns it. Not recorded: it is deleted at ACS
 *   (compensation). While the store is down this is retried in the background, and the id is
 *   logged at warn when that starts; a row never points at an identity compensation deleted. If
 *   the process stops first (`close`), or the clean-up gives up, the id is logged at error as
 *   possibly orphaned; if it dies, the warn line has it, and the identity is either recorded
 *   (pending, found again) or to be deleted by that id.
 * - A crash after the reservation and before the record: the reservation's lease runs out (at
 *   most `leaseMs` after the crash: no renewal follows it) and the next call takes it over. If
 *   the crash fell inside the ACS create call after ACS had created
 *   the identity, that identity cannot be found again: API 2023-10-01 has neither a list call nor
 *   an idempotent create (the preview's `customId` would close this window). That window is one
 *   HTTP round trip; nothing else in the flow leaves an unrecorded identity.
 *
 * Background clean-ups are bounded: one per caller for releases, one per failed record for
 * settles, at most `maxCleanups` at a time (beyond it, releases rely on the lease and settles log
 * the id as possibly orphaned), each logged once when it starts waiting and once when it ends.
 */
export interface Provisioner {
  /**
   * The caller's identity: the mapped one, or one created, recorded and confirmed now.
   * `createUser` makes the ACS call (self-service passes one charged to the caller); without it,
   * the `identity` option's `createUser` does.
   */
  identityOf(subjectKey: string, createUser?: () => Promise<string>): Promise<string>;
  /**
   * The caller's identity if one is recorded, confirmed or pending (confirmed on the way when the
   * store lets it; still the caller's when it does not).
   */
  currentIdentity(subjectKey: string): Promise<string | undefined>;
  /** Confirms identities left pending by a crash (at start); returns how many it confirmed. */
  recover(limit?: number): Promise<number>;
  /**
   * Stops the background clean-ups (releases, settles) still waiting for the store, logging the
   * id of each identity whose record was not settled yet at error (possibly orphaned).
   */
  close(): void;
}

/** Where the test hook may stop the process (see `exitAfterStep`). */
export type ProvisioningStep = "reserved" | "recorded";

export interface ProvisionerOptions {
  store: UserMappingStore;
  /**
   * The store the background clean-ups (releases, settles) and lease renewals use: the same data,
   * without the caller-facing wrapper that logs each failure and turns it into an API error, since
   * a clean-up waiting for the store logs once when it starts waiting and once when it ends (and a
   * renewal that fails is tried again at the next half lease). @default store
   */
  cleanupStore?: UserMappingStore;
  /**
   * `deleteUser` compensates (uncharged: the gateway's own clean-up); `createUser`, when given,
   * creates for an `identityOf` call that brings no `createUser` of its own.
   */
  identity: Pick<IdentityProvider, "deleteUser"> & Partial<Pick<IdentityProvider, "createUser">>;
  logger: Logger;
  now?: () => number;
  /**
   * How long a reservation without an identity belongs to its creator (ms) after it was made or
   * last renewed: a dead creator blocks its caller for at most this long. A live one renews it
   * while its ACS create call is in flight, so it is never overtaken however long that call takes.
   * The gateway passes its request timeout (HTTP_REQUEST_TIMEOUT_MS, app.ts).
   * @default 10000 (HTTP_REQUEST_TIMEOUT_MS's default)
   */
  leaseMs?: number;
  /** How long a call waits for another call creating the same caller's identity (ms). @default 10000 */
  maxWaitMs?: number;
  /** Waiting between looks at another call's reservation (replaceable for fake clocks). */
  sleep?: (ms: number) => Promise<void>;
  /** Test hook after each step (e.g. stop the process there). */
  afterStep?: (step: ProvisioningStep, subjectKey: string) => Promise<void> | void;
  /**
   * Pauses between background attempts to release or settle while the store is down (ms); they
   * go on for `cleanupForMs`. @default [250, 500, 1000, 2000]
   */
  cleanupBackoffMs?: readonly number[];
  /** @default 600000 (ten minutes) */
  cleanupForMs?: number;
  /**
   * Most background clean-ups waiting for the store at once; beyond it a release relies on its
   * lease, and a settle logs its identity as possibly orphaned. @default 1000
   */
  maxCleanups?: number;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Did the store fail before sending anything, so that a failed `reserve` cannot have written its
 * reservation (and there is nothing to release)? Only for failures known to be raised before a
 * command leaves the process; anything else may have been written (a timeout may still commit).
 *
 * - The memory store's `UserMappingStoreFullError` is thrown before it writes.
 * - The database's `DatabaseNotOpenError` (src/directory/db.ts): its open never succeeded, so no
 *   statement was ever sent (once open, a database stays open for the process).
 * - Not PostgreSQL's ECONNREFUSED: the SQL store's `reserve` may make more than one statement (the
 *   import from Redis inserts, then reads, then releases on failure), so a refused connection may
 *   follow a committed insert.
 *
 * The guarded store (guarded-mapping-store.ts) throws its own error in place of the store's: the
 * cause is looked for along `cause`, and without it the reservation is released (when unsure,
 * release).
 */
export function nothingWritten(error: unknown): boolean {
  let e: unknown = error;
  for (let depth = 0; depth < 5 && e instanceof Error; depth++, e = e.cause) {
    if (e.name === "UserMappingStoreFullError" || e.name === "DatabaseNotOpenError") {
      return true;
    }
  }
  return false;
}

/** How a clean-up ended. */
/** One clean-up that may have to wait for the store: a caller's releases, or one settle. */
type Cleanup = RetriedWork;

/** A caller's reservations to release: id -> its lease's end (epoch ms, `now`'s clock). */
interface Releases extends RetriedWork {
  ids: Map<string, number>;
}

export function createProvisioner(options: ProvisionerOptions): Provisioner {
  const { store, identity, logger } = options;
  const cleanupStore = options.cleanupStore ?? store;
  const now = options.now ?? Date.now;
  const leaseMs = options.leaseMs ?? 10_000;
  const maxWaitMs = options.maxWaitMs ?? 10_000;
  const sleep = options.sleep ?? defaultSleep;
  const afterStep = options.afterStep ?? (() => {});

  const backoff = options.cleanupBackoffMs ?? [250, 500, 1000, 2000];
  const cleanupForMs = options.cleanupForMs ?? 600_000;
  const maxCleanups = options.maxCleanups ?? 1000;

  /** Releases per subject key: one clean-up per caller, however many of its calls failed. */
  const releases = new Map<string, Releases>();
  /**
   * The clean-ups that wait for the store: tried at once; while the store is down, again in the
   * background with a growing pause, for `cleanupForMs`. The caller's request waits for the first
   * try only.
   */
  const cleanups = createBackgroundRetries({
    delaysMs: backoff,
    forMs: cleanupForMs,
    max: maxCleanups,
    overCap: () =>
      logger.warn(
        { maxCleanups },
        "too many clean-ups waiting for the identity mapping store: reservations are left to their leases, and identities whose record failed are logged as possibly orphaned",
      ),
  });
  let closed = false;

  /**
   * Releases our reservation, now or (it may have been written after all) once the store is back,
   * until its lease ends: after that the next call takes it over, and releasing it changes
   * nothing. A caller whose earlier failed call's release is still waiting joins that one: it
   * releases every reservation id its calls used (only one can have been written, and releasing
   * one that is not ours is a no-op), one at a time, stopping at the first the store refuses.
   */
  function release(subjectKey: string, reservationId: string, leaseUntil: number): Promise<void> {
    const joined = releases.get(subjectKey);
    if (joined) {
      joined.ids.set(reservationId, leaseUntil);
      return Promise.resolve();
    }
    let released = 0;
    const cleanup: Releases = {
      ids: new Map([[reservationId, leaseUntil]]),
      async attempt() {
        for (const [id, until] of cleanup.ids) {
          if (now() < until) {
            await cleanupStore.release(subjectKey, id);
            released++;
          }
          cleanup.ids.delete(id);
        }
        // Forgotten in the same step as the last look at `ids`: a later failed call starts afresh.
        if (releases.get(subjectKey) === cleanup) {
          releases.delete(subjectKey);
        }
        return true;
      },
      waiting() {
        logger.info(
          { leaseMs },
          "could not release an identity reservation; retrying in the background until the mapping store is back or the lease ends",
        );
      },
      end(how) {
        if (releases.get(subjectKey) === cleanup) {
          releases.delete(subjectKey);
        }
        if (how === "done") {
          logger.info(
            { released },
            released > 0
              ? "the mapping store is back: released the identity reservations left by failed calls"
              : "the identity reservations left by failed calls reached the end of their leases before the mapping store came back: nothing left to release",
          );
        } else if (how === "gave-up") {
          logger.warn(
            { leaseMs },
            "could not release an identity reservation; it blocks its caller until its lease ends",
          );
        }
      },
    };
    releases.set(subjectKey, cleanup);
    return cleanups.run(cleanup).then(() => undefined);
  }

  /** Deletes an identity the store did not take; logs loudly when even that fails. */
  async function compensate(userId: string, why: string): Promise<void> {
    try {
      await identity.deleteUser(userId);
      logger.warn({ userId, why }, "deleted an identity the mapping store could not record");
    } catch (error) {
      logger.error(
        { userId, why, err: errorText(error) },
        "ORPHANED ACS identity: it could not be recorded nor deleted; delete it by its id",
      );
    }
  }

  /**
   * The record of `userId` failed without saying whether it landed. Release the reservation first,
   * so a late record can no longer land, then look: recorded after all, the identity is the
   * caller's (confirm it); not recorded, delete it at ACS. Never the other order: a record landing
   * after the delete would leave the caller mapped to a deleted identity. Resolves with what the
   * first try found ("unsettled" when the store could not tell; the background goes on).
   */
  async function settle(
    subjectKey: string,
    reservationId: string,
    userId: string,
  ): Promise<"kept" | "deleted" | "unsettled"> {
    let outcome: "kept" | "deleted" | "unsettled" = "unsettled";
    const cleanup: Cleanup = {
      async attempt() {
        await cleanupStore.release(subjectKey, reservationId);
        const found = await cleanupStore.find(subjectKey);
        if (found?.userId === userId) {
          if (!found.confirmed) {
            // Recorded is the caller's already (as after a failed confirm in `createFor`): a
            // confirm refused now leaves it pending, for the next call or a start-up to confirm.
            await store
              .confirm(subjectKey, userId)
              .catch((error: unknown) =>
                logger.warn(
                  { userId, err: errorText(error) },
                  "could not confirm a recorded identity; it stays pending until the next call confirms it",
                ),
              );
          }
          logger.info({ userId }, "an identity whose record failed was recorded after all");
          outcome = "kept";
          return true;
        }
        await compensate(userId, "record failed");
        outcome = "deleted";
        return true;
      },
      waiting() {
        logger.warn(
          { userId },
          "record outcome unknown; settling once the store is back (the identity is kept if it was recorded, deleted at ACS if not)",
        );
      },
      end(how) {
        if (how === "gave-up") {
          logger.error(
            { userId },
            "possibly ORPHANED ACS identity: its record failed and the mapping store never came back to tell; delete it by its id unless a caller has it",
          );
        } else if (how === "stopped" || how === "over-cap") {
          logger.error(
            { userId },
            how === "stopped"
              ? "possibly ORPHANED ACS identity: the gateway stopped before its failed record was settled; delete it by its id unless a caller has it"
              : "possibly ORPHANED ACS identity: its record failed and too many clean-ups are waiting to settle it; delete it by its id unless a caller has it",
          );
        }
      },
    };
    await cleanups.run(cleanup);
    return outcome;
  }

  /**
   * Keeps our reservation's lease running while the ACS create call is in flight: each time half
   * of it is left, the reservation is made again under our id, which only moves the lease on
   * while the reservation is still ours and holds no identity. So a live creator is never taken
   * over, and a dead one's lease ends at most `leaseMs` after its last renewal. A renewal the store
   * refuses is tried again at the next half; one that finds the reservation no longer ours stops
   * (the record then tells, and never lands on another call's reservation). `end` stops renewing
   * and waits for a renewal in flight, so none lands after the record or release that follows;
   * it resolves with the latest the lease may run to (a failed renewal may have been written).
   */
  function holdLease(
    subjectKey: string,
    reservationId: string,
    leaseUntil: number,
  ): { end(): Promise<number> } {
    let until = leaseUntil;
    let ended = false;
    let timer: NodeJS.Timeout | undefined;
    let renewing: Promise<void> | undefined;
    const schedule = () => {
      const delay = Math.max(0, Math.min(leaseMs / 2, until - now() - leaseMs / 2));
      timer = setTimeout(() => {
        timer = undefined;
        renewing = renew();
      }, delay);
      timer.unref();
    };
    async function renew(): Promise<void> {
      const at = now();
      until = Math.max(until, at + leaseMs);
      try {
        const held = await cleanupStore.reserve(subjectKey, reservationId, at + leaseMs, at);
        if (held.kind !== "reserved") {
          return; // no longer ours to keep
        }
      } catch (error) {
        logger.debug(
          { err: errorText(error) },
          "could not renew an identity reservation's lease; trying again",
        );
      }
      if (!ended && !closed) {
        schedule();
      }
    }
    schedule();
    return {
      async end() {
        ended = true;
        clearTimeout(timer);
        await renewing;
        return until;
      },
    };
  }

  async function createFor(
    subjectKey: string,
    reservationId: string,
    leaseUntil: number,
    createUser: () => Promise<string>,
  ): Promise<string | undefined> {
    const lease = holdLease(subjectKey, reservationId, leaseUntil);
    // Through a promise: a createUser that throws at once still ends the lease below.
    const created = await Promise.resolve()
      .then(createUser)
      .then(
        (userId) => ({ userId }),
        (error: unknown) => ({ error }),
      );
    const heldUntil = await lease.end();
    if ("error" in created) {
      await release(subjectKey, reservationId, heldUntil);
      throw created.error;
    }
    const { userId } = created;
    let recorded: boolean;
    try {
      recorded = await store.record(subjectKey, reservationId, userId);
    } catch (error) {
      if ((await settle(subjectKey, reservationId, userId)) === "kept") {
        // The record landed though the store answered an error: the identity is the caller's.
        return userId;
      }
      throw error;
    }
    if (!recorded) {
      // Our lease ran out during the ACS call (its renewals could not reach the store) and another
      // call took the reservation over: the record did not touch that call's reservation.
      await compensate(userId, "reservation taken over");
      return undefined;
    }
    await afterStep("recorded", subjectKey);
    try {
      await store.confirm(subjectKey, userId);
    } catch (error) {
      // Recorded is safe: the identity is the caller's already (`get` and `currentIdentity` say
      // so), and the next call or a start-up confirms it. The caller may use it now.
      logger.warn(
        { err: errorText(error) },
        "could not confirm a recorded identity; it stays pending until the next call confirms it",
      );
    }
    return userId;
  }

  return {
    async identityOf(subjectKey, createUser = identity.createUser?.bind(identity)) {
      if (createUser === undefined) {
        // A wiring mistake, found before anything is reserved: nothing would create the identity.
        throw new Error("identityOf needs a createUser: the provisioner's identity has none");
      }
      const reservationId = randomUUID();
      let waited = 0;
      let pause = 25;
      for (let round = 0; round < 100; round++) {
        const at = now();
        let held;
        try {
          held = await store.reserve(subjectKey, reservationId, at + leaseMs, at);
        } catch (error) {
          // The reservation may have been written before the store failed: release it once the
          // store is back, or this caller would wait out its lease.
          if (!nothingWritten(error)) {
            await release(subjectKey, reservationId, at + leaseMs);
          }
          throw error;
        }
        if (held.kind === "mapped") {
          return held.userId;
        }
        if (held.kind === "pending") {
          if (await store.confirm(subjectKey, held.userId)) {
            return held.userId;
          }
          continue;
        }
        if (held.kind === "busy") {
          if (waited >= maxWaitMs) {
            throw new DomainError(
              "upstream-unavailable",
              "Your communication identity is being created by another request. Try again.",
            );
          }
          const wait = Math.max(1, Math.min(pause, held.leaseUntil - at, maxWaitMs - waited));
          await sleep(wait);
          waited += wait;
          pause = Math.min(pause * 2, 500);
          continue;
        }
        await afterStep("reserved", subjectKey);
        const created = await createFor(subjectKey, reservationId, at + leaseMs, createUser);
        if (created !== undefined) {
          return created;
        }
      }
      throw new DomainError(
        "upstream-unavailable",
        "Your communication identity could not be settled. Try again.",
      );
    },

    async currentIdentity(subjectKey) {
      const found = await store.find(subjectKey);
      if (found && !found.confirmed) {
        await store
          .confirm(subjectKey, found.userId)
          .catch((error: unknown) =>
            logger.warn(
              { err: error instanceof Error ? error.message : String(error) },
              "could not confirm a recorded identity; it stays pending, and is the caller's",
            ),
          );
      }
      return found?.userId;
    },

    close() {
      closed = true;
      // A settle still waiting logs its identity as possibly orphaned (its `end`).
      cleanups.stop();
    },

    async recover(limit = 1000) {
      let confirmed = 0;
      for (const { subjectKey, userId } of await store.pending(limit)) {
        if (await store.confirm(subjectKey, userId)) {
          confirmed++;
        }
      }
      if (confirmed > 0) {
        logger.info({ confirmed }, "confirmed identities left pending by an earlier crash");
      }
      return confirmed;
    },
  };
}

/**
 * Start-up recovery: confirms the identities a crash left recorded but unconfirmed now, rather than
 * on each caller's next call. A store that is down does not stop the start (it is logged): each of
 * those callers' next call confirms its own. @returns how many it confirmed
 */
export async function recoverPendingIdentities(
  provisioner: Pick<Provisioner, "recover">,
  logger: Logger,
): Promise<number> {
  try {
    return await provisioner.recover();
  } catch (error) {
    logger.warn({ err: errorText(error) }, "could not look for pending identities at start");
    return 0;
  }
}

/**
 * `ACSGW_TEST_EXIT_AFTER_STEP=reserved|recorded` (config.ts, `testExitAfterStep`): the process
 * exits (code 86, no clean-up) right after that step, as a crash would. For the crash tests only;
 * the configuration ignores it in production.
 */
export function exitAfterStep(step: ProvisioningStep | undefined): ProvisionerOptions["afterStep"] {
  if (step === undefined) {
    return undefined;
  }
  return (reached) => {
    if (reached === step) {
      process.exit(86);
    }
  };
}
