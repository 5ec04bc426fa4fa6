import { randomUUID } from "node:crypto";
import { DomainError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { IdentityProvider } from "./identity-provider.js";
import type { UserMappingStore } from "./user-mapping-store.js";

/**
 * Creates a caller's ACS identity on first use without ever creating one the store cannot record:
 * reserve (store), create (ACS), record (store), confirm (store). See user-mapping-store.ts for
 * what each step writes.
 *
 * - The store refuses the reservation (Redis at maxmemory, PostgreSQL down, a timeout): nothing
 *   was created; the call fails.
 * - ACS fails to create: the reservation is released; the call fails.
 * - The store refuses the record: the identity is deleted at ACS (compensation) before the call
 *   fails. If that delete fails too, the identity id is logged at error level for an operator.
 * - A crash after the record: the identity is pending in the store; the caller's next call, or any
 *   instance's start-up (`recover`), confirms it. It is never lost and never duplicated.
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
  /** Confirms identities left pending by a crash (at start); returns how many it confirmed. */
  recover(limit?: number): Promise<number>;
}

/** Where the test hook may stop the process (see `exitAfterStepFromEnv`). */
export type ProvisioningStep = "reserved" | "recorded";

export interface ProvisionerOptions {
  store: UserMappingStore;
  /** `deleteUser` compensates (uncharged: the gateway's own clean-up); `createUser` by default. */
  identity: Pick<IdentityProvider, "createUser" | "deleteUser">;
  logger: Logger;
  now?: () => number;
  /**
   * How long a reservation without an identity belongs to its creator (ms). Longer than the
   * slowest ACS create call with the SDK's retries, so a live creator is never overtaken.
   * @default 60000
   */
  leaseMs?: number;
  /** How long a call waits for another call creating the same caller's identity (ms). @default 10000 */
  maxWaitMs?: number;
  /** Waiting between looks at another call's reservation (replaceable for fake clocks). */
  sleep?: (ms: number) => Promise<void>;
  /** Test hook after each step (e.g. stop the process there). */
  afterStep?: (step: ProvisioningStep, subjectKey: string) => Promise<void> | void;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function createProvisioner(options: ProvisionerOptions): Provisioner {
  const { store, identity, logger } = options;
  const now = options.now ?? Date.now;
  const leaseMs = options.leaseMs ?? 60_000;
  const maxWaitMs = options.maxWaitMs ?? 10_000;
  const sleep = options.sleep ?? defaultSleep;
  const afterStep = options.afterStep ?? (() => {});

  /** Deletes an identity the store could not take; logs loudly when even that fails. */
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

  async function createFor(
    subjectKey: string,
    reservationId: string,
    createUser: () => Promise<string>,
  ): Promise<string | undefined> {
    let userId: string;
    try {
      userId = await createUser();
    } catch (error) {
      await store.release(subjectKey, reservationId).catch(() => {});
      throw error;
    }
    let recorded: boolean;
    try {
      recorded = await store.record(subjectKey, reservationId, userId);
    } catch (error) {
      await compensate(userId, "record failed");
      await store.release(subjectKey, reservationId).catch(() => {});
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
      // Recorded is safe: the next call or a start-up confirms it. The caller may use it now.
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
        const held = await store.reserve(subjectKey, reservationId, at + leaseMs, at);
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
 * `ACSGW_TEST_EXIT_AFTER_STEP=reserved|recorded`: the process exits (code 86, no clean-up) right
 * after that step, as a crash would. For the crash tests only; refused in production.
 */
export function exitAfterStepFromEnv(
  env: Record<string, string | undefined>,
  production: boolean,
): ProvisionerOptions["afterStep"] {
  const step = env.ACSGW_TEST_EXIT_AFTER_STEP;
  if (!step || production) {
    return undefined;
  }
  if (step !== "reserved" && step !== "recorded") {
    throw new Error("ACSGW_TEST_EXIT_AFTER_STEP must be reserved or recorded");
  }
  return (reached) => {
    if (reached === step) {
      process.exit(86);
    }
  };
}
