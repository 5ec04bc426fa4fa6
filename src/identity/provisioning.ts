import { randomUUID } from "node:crypto";
import { DomainError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { IdentityProvider } from "./identity-provider.js";
import type { UserMappingStore } from "./user-mapping-store.js";

/**
 * Creates a caller's ACS identity on first use without ever creating one the store cannot record:
 * reserve (store), create (ACS), record (store), confirm (store). See user-mapping-store.ts for
 * what each step writes. Every state this can be left in, and how it is left:
 *
 * - reserved (no identity yet): the creator's lease runs for `leaseMs`, which bounds the ACS
 *   create call (sent once, never retried), so it outlives a dead creator by less than one
 *   request. A live creator whose call failed releases it, and keeps trying in the background
 *   while the store is down, so once the store is back the caller is not kept waiting.
 * - The store refuses the reservation: nothing was created; the call fails (and the reservation,
 *   which may have been written after all, is released as above).
 * - ACS fails to create: the reservation is released; the call fails.
 * - pending (recorded, not confirmed): the identity is the caller's for every purpose (`get`,
 *   `me`, revoke, delete); the caller's next call, any reader through `currentIdentity`, or any
 *   instance's start-up (`recover`) confirms it. It is never lost and never duplicated.
 * - The record fails: its outcome is unknown (a timed-out statement may still commit), so the
 *   identity is settled before anything is deleted: the reservation is released first (a late
 *   record can then no longer land), then the subject is read. Recorded after all: it is the
 *   caller's, and is confirmed. Not recorded: it is deleted at ACS (compensation). While the store
 *   is down this is retried in the background; a row never points at an identity compensation
 *   deleted. If the process dies first, the identity is either recorded (pending, found again) or
 *   logged below as possibly orphaned.
 * - A crash after the reservation and before the record: the reservation's lease runs out and the
 *   next call takes it over. If the crash fell inside the ACS create call after ACS had created
 *   the identity, that identity cannot be found again: API 2023-10-01 has neither a list call nor
 *   an idempotent create (the preview's `customId` would close this window). That window is one
 *   HTTP round trip; nothing else in the flow leaves an unrecorded identity.
 */
export interface Provisioner {
  /**
   * The caller's identity: the mapped one, or one created, recorded and confirmed now.
   * `createUser` makes the ACS call (the token service passes one charged to the caller).
   */
  identityOf(subjectKey: string, createUser?: () => Promise<string>): Promise<string>;
  /**
   * The caller's identity if one is recorded, confirmed or pending (confirmed on the way when the
   * store lets it; still the caller's when it does not).
   */
  currentIdentity(subjectKey: string): Promise<string | undefined>;
  /** Confirms identities left pending by a crash (at start); returns how many it confirmed. */
  recover(limit?: number): Promise<number>;
  /** Stops the background clean-ups (releases, settles) still waiting for the store. */
  close(): void;
}

/** Where the test hook may stop the process (see `exitAfterStep`). */
export type ProvisioningStep = "reserved" | "recorded";

export interface ProvisionerOptions {
  store: UserMappingStore;
  /** `deleteUser` compensates (uncharged: the gateway's own clean-up); `createUser` by default. */
  identity: Pick<IdentityProvider, "createUser" | "deleteUser">;
  logger: Logger;
  now?: () => number;
  /**
   * How long a reservation without an identity belongs to its creator (ms): longer than the
   * slowest ACS create call (the identity provider's 10 s timeout; a create is sent once), so a
   * live creator is never overtaken, and short enough that a dead one blocks its caller for less
   * than a request's time.
   * @default 15000
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
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function createProvisioner(options: ProvisionerOptions): Provisioner {
  const { store, identity, logger } = options;
  const now = options.now ?? Date.now;
  const leaseMs = options.leaseMs ?? 15_000;
  const maxWaitMs = options.maxWaitMs ?? 10_000;
  const sleep = options.sleep ?? defaultSleep;
  const afterStep = options.afterStep ?? (() => {});

  const backoff = options.cleanupBackoffMs ?? [250, 500, 1000, 2000];
  const cleanupForMs = options.cleanupForMs ?? 600_000;
  const cleanups = new Set<NodeJS.Timeout>();
  let closed = false;

  /**
   * Runs `attempt` now and, while it throws (the store is down), again in the background with a
   * growing pause, for `cleanupForMs`; `gaveUp` runs if it never succeeded. Resolves after the
   * first attempt, whichever way it went: the caller's request does not wait for the store.
   */
  async function untilDone(attempt: () => Promise<void>, gaveUp: () => void): Promise<void> {
    const started = performance.now();
    let tries = 0;
    const once = async (): Promise<boolean> => {
      try {
        await attempt();
        return true;
      } catch {
        return false;
      }
    };
    const later = () => {
      if (closed) {
        return;
      }
      if (performance.now() - started >= cleanupForMs) {
        gaveUp();
        return;
      }
      const timer = setTimeout(
        () => {
          cleanups.delete(timer);
          void once().then((done) => (done ? undefined : later()));
        },
        backoff[Math.min(tries++, backoff.length - 1)],
      );
      timer.unref();
      cleanups.add(timer);
    };
    if (!(await once())) {
      later();
    }
  }

  /** Releases our reservation, now or once the store is back (it may have been written after all). */
  function release(subjectKey: string, reservationId: string): Promise<void> {
    return untilDone(
      () => store.release(subjectKey, reservationId),
      () =>
        logger.warn(
          { leaseMs },
          "could not release an identity reservation; it blocks its caller until its lease ends",
        ),
    );
  }

  /** Deletes an identity the store did not take; logs loudly when even that fails. */
  async function compensate(userId: string, why: string): Promise<void> {
    try {
      await identity.deleteUser(userId);
      logger.warn({ userId, why }, "deleted an identity the mapping store could not record");
    } catch (error) {
      logger.error(
        { userId, why, err: error instanceof Error ? error.message : String(error) },
        "ORPHANED ACS identity: it could not be recorded nor deleted; delete it by its id",
      );
    }
  }

  /**
   * The record of `userId` failed without saying whether it landed. Release the reservation first,
   * so a late record can no longer land, then look: recorded after all, the identity is the
   * caller's (confirm it); not recorded, delete it at ACS. Never the other order: a record landing
   * after the delete would leave the caller mapped to a deleted identity.
   */
  function settle(subjectKey: string, reservationId: string, userId: string): Promise<void> {
    return untilDone(
      async () => {
        await store.release(subjectKey, reservationId);
        const found = await store.find(subjectKey);
        if (found?.userId === userId) {
          if (!found.confirmed) {
            await store.confirm(subjectKey, userId);
          }
          logger.info({ userId }, "an identity whose record failed was recorded after all");
          return;
        }
        await compensate(userId, "record failed");
      },
      () =>
        logger.error(
          { userId },
          "ORPHANED ACS identity: its record failed and the mapping store never came back to tell; delete it by its id unless a caller has it",
        ),
    );
  }

  async function createFor(
    subjectKey: string,
    reservationId: string,
    createUser: () => Promise<string>,
  ): Promise<string | undefined> {
    let userId: string;
    try {
      userId = await createUser();
    } catch (error) {
      await release(subjectKey, reservationId);
      throw error;
    }
    let recorded: boolean;
    try {
      recorded = await store.record(subjectKey, reservationId, userId);
    } catch (error) {
      await settle(subjectKey, reservationId, userId);
      throw error;
    }
    if (!recorded) {
      // Our lease ran out during the ACS call and another call took the reservation over.
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
        { err: error instanceof Error ? error.message : String(error) },
        "could not confirm a recorded identity; it stays pending until the next call confirms it",
      );
    }
    return userId;
  }

  return {
    async identityOf(subjectKey, createUser = () => identity.createUser()) {
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
          await release(subjectKey, reservationId);
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
        const created = await createFor(subjectKey, reservationId, createUser);
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
      cleanups.forEach(clearTimeout);
      cleanups.clear();
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
