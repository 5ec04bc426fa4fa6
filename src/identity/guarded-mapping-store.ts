import { DomainError } from "../errors.js";
import type { Logger } from "../logger.js";
import { wrapMethods } from "../wrap-methods.js";
import type { UserMappingStore } from "./user-mapping-store.js";

/**
 * The mapping store as callers' requests use it. The store is data the gateway cannot guess: when
 * it cannot be read or written, the call fails as a dependency failure (`upstream-unavailable`,
 * logged here once per failed call), never by minting a second identity for the caller.
 *
 * The store's own error is kept as the `cause`: the provisioner reads it to tell "nothing was
 * sent" from "may have been written" (provisioning.ts, `nothingWritten`).
 */
export function guardMappingStore(store: UserMappingStore, logger: Logger): UserMappingStore {
  // Every method alike (a new one too); `close` is passed through unguarded.
  return wrapMethods(
    store,
    async (operation, call) => {
      try {
        return await call();
      } catch (error) {
        logger.warn({ operation, err: describe(error) }, "identity mapping store failed");
        throw new DomainError(
          "upstream-unavailable",
          "The identity mapping store is unavailable. Try again.",
          {},
          { cause: error },
        );
      }
    },
    { except: ["close"] },
  );
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
