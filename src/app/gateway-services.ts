import type { TokenCache } from "../cache/token-cache.js";
import type { GatewayServices } from "../graphql/context.js";
import { noDirectory, type DirectoryRecords } from "../identity/directory-records.js";
import { guardMappingStore } from "../identity/guarded-mapping-store.js";
import { createIdentityMappings } from "../identity/identity-mappings.js";
import type { IdentityProvider } from "../identity/identity-provider.js";
import type { KnownMappings } from "../identity/known-mappings.js";
import {
  createProvisioner,
  type Provisioner,
  type ProvisionerOptions,
} from "../identity/provisioning.js";
import type { UserMappingStore } from "../identity/user-mapping-store.js";
import type { Logger } from "../logger.js";
import type { Audit } from "../tokens/audit.js";
import { createSelfService } from "../tokens/self-service.js";
import { createTokenService } from "../tokens/token-service.js";
import { meterUpstream, type UpstreamBudget } from "../tokens/upstream-budget.js";
import { createUserTokens } from "../tokens/user-tokens.js";

export interface GatewayServicesDeps {
  identity: IdentityProvider;
  /** Charged once per ACS call on behalf of a caller; throws `rate-limited` when spent. */
  budget: UpstreamBudget;
  cache: TokenCache;
  /** The mapping store as opened (unguarded): the services guard it themselves. */
  mappings: UserMappingStore;
  logger: Logger;
  /** Told of every identity change after ACS accepted it (tokens/audit.ts). @default nothing */
  audit?: Audit;
  /**
   * Mappings this process has seen, read by `issueMyToken` before the store (known-mappings.ts).
   * @default 10,000 entries for at most 60 s
   */
  knownMappings?: KnownMappings;
  now?: () => number;
  /** The identity directory (app/directory.ts over src/directory/). @default none: records nothing */
  directory?: DirectoryRecords;
  /** ACS_CUSTOM_ID: creates with an external id send it to ACS as `customId`. @default false */
  customId?: boolean;
  /** Provisioning knobs (lease, waits, test hooks); the store and ACS client come from above. */
  provisioning?: Omit<ProvisionerOptions, "store" | "cleanupStore" | "identity" | "logger">;
}

/**
 * The provisioner's delete of an identity its mapping store could not take. One the directory
 * holds under an external id is never an orphan (the next createOnce finds it, and it may be an
 * admin's, with its chats), so it is kept; so is one the directory cannot answer for right now:
 * an identity kept in doubt is logged with its id, one deleted in doubt is lost for good.
 */
export function compensatingDelete(
  directory: Pick<DirectoryRecords, "holdsByExternalId">,
  deleteUser: (userId: string) => Promise<void>,
  logger: Logger,
): (userId: string) => Promise<void> {
  return async (userId) => {
    let held: boolean;
    try {
      held = await directory.holdsByExternalId(userId);
    } catch (error) {
      logger.warn(
        { userId, err: { message: (error as Error)?.message } },
        "kept an identity the mapping store could not record: the directory could not say whether it holds it; delete it by its id if no one uses it",
      );
      return;
    }
    if (held) {
      logger.info({ userId }, "kept an identity the directory holds by external id");
      return;
    }
    await deleteUser(userId);
  };
}

/**
 * The token path as createApp builds it: the services the GraphQL context carries, over one
 * metered upstream (so one caller's identical issues share a charge whichever service asks), and
 * the provisioner, which the caller recovers at start and closes at shutdown before the mapping
 * store its background clean-ups wait for.
 */
export function createGatewayServices(deps: GatewayServicesDeps): {
  services: GatewayServices;
  provisioner: Provisioner;
} {
  const { cache, logger } = deps;
  const now = deps.now ?? Date.now;
  const audit = deps.audit ?? (() => {});
  const directory = deps.directory ?? noDirectory(now);
  const customId = deps.customId ?? false;
  // The only handle on ACS the services get: every call is charged to the caller it is made for.
  const upstream = meterUpstream(deps.identity, deps.budget);
  const store = guardMappingStore(deps.mappings, logger);
  const mappings = createIdentityMappings({
    store,
    tombstones: cache,
    known: deps.knownMappings,
  });
  // The provisioner gets no charged ACS handle of its own: its creates are the caller's (passed
  // per call by self-service), its compensating deletes the gateway's own clean-up (uncharged).
  const provisioner = createProvisioner({
    now,
    ...deps.provisioning,
    store,
    // Background clean-ups log once when they start waiting for the store, not per retry.
    cleanupStore: deps.mappings,
    identity: {
      deleteUser: compensatingDelete(
        directory,
        (userId) => upstream.uncharged.deleteUser(userId),
        logger,
      ),
    },
    logger,
  });
  const userTokens = createUserTokens({ upstream, cache, mappings, audit, directory, now });
  return {
    services: {
      tokens: createTokenService({ upstream, userTokens, audit, directory, customId }),
      selfService: createSelfService({
        upstream,
        userTokens,
        provisioner,
        mappings,
        audit,
        directory,
        customId,
        now,
      }),
      directory,
      ownership: mappings,
      upstream,
    },
    provisioner,
  };
}
