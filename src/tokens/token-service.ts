import { UserDeletedError, type TokenCache } from "../cache/token-cache.js";
import { badInput, GatewayError, notFound } from "../errors.js";
import type { IdentityProvider } from "../identity/identity-provider.js";
import { createProvisioner, type ProvisionerOptions } from "../identity/provisioning.js";
import type { UserMappingStore } from "../identity/user-mapping-store.js";
import { UpstreamError } from "../identity/upstream-error.js";
import type { Logger } from "../logger.js";
import {
  isAcsScope,
  isAcsUserId,
  isValidLifetime,
  MAX_TOKEN_LIFETIME_MINUTES,
  MIN_TOKEN_LIFETIME_MINUTES,
  normalizeScopes,
  type AcsScope,
} from "./scopes.js";

export interface IssueTokenInput {
  /** Absent: a new user and its token, in one upstream call (never cached). */
  userId?: string | undefined;
  scopes: readonly AcsScope[];
  expiresInMinutes?: number | undefined;
}

export interface TokenGrant {
  userId: string;
  token: string;
  /** epoch ms */
  expiresOn: number;
  /** normalised: sorted, unique */
  scopes: readonly AcsScope[];
}

export interface TokenService {
  createUser(): Promise<string>;
  issueToken(input: IssueTokenInput): Promise<TokenGrant>;
  /** @returns when the revocation took effect (epoch ms) */
  revokeTokens(userId: string): Promise<number>;
  /** @returns when the user was deleted (epoch ms) */
  deleteUser(userId: string): Promise<number>;
  /** The ACS identity mapped to a signed-in caller (`Caller.key`), if any. */
  userIdOf(subjectKey: string): Promise<string | undefined>;
  /** The caller's own token; its identity is created and mapped on first use. */
  issueMyToken(
    subjectKey: string,
    scopes: readonly AcsScope[],
    expiresInMinutes?: number,
  ): Promise<TokenGrant>;
  /** For federation `_entities`: is this id well formed and not known to be deleted? */
  isKnownDeleted(userId: string): Promise<boolean>;
  /**
   * Is or was `userId` the caller's own identity (also after it was deleted or replaced)? The
   * rights check for revoking tokens: a former owner may still revoke what was theirs.
   */
  ownsOrOwned(subjectKey: string, userId: string): Promise<boolean>;
  /** Confirms self-service identities a crash left pending (called at start). */
  recoverPendingIdentities(): Promise<number>;
}

export interface TokenServiceDeps {
  identity: IdentityProvider;
  cache: TokenCache;
  mappings: UserMappingStore;
  logger: Logger;
  now?: () => number;
  /** Provisioning knobs (lease, waits, test hooks); the store and ACS client come from above. */
  provisioning?: Omit<ProvisionerOptions, "store" | "identity" | "logger">;
}

/** Throws BAD_USER_INPUT for anything ACS would refuse, so no upstream call is spent on it. */
export function assertUserId(userId: string): void {
  if (!isAcsUserId(userId)) {
    throw badInput(
      "userId is not an ACS communication user id (8:acs:<resource>_<user>).",
      "userId",
    );
  }
}

function checkScopes(scopes: readonly AcsScope[]): AcsScope[] {
  if (scopes.length === 0) {
    throw badInput("scopes must name at least one scope.", "scopes");
  }
  if (scopes.length > 16) {
    throw badInput("scopes may list at most 16 entries.", "scopes");
  }
  if (!scopes.every(isAcsScope)) {
    throw badInput("scopes holds an unknown scope.", "scopes");
  }
  return normalizeScopes(scopes);
}

function checkLifetime(minutes: number | undefined): void {
  if (minutes !== undefined && !isValidLifetime(minutes)) {
    throw badInput(
      `expiresInMinutes must be a whole number from ${MIN_TOKEN_LIFETIME_MINUTES} to ${MAX_TOKEN_LIFETIME_MINUTES}.`,
      "expiresInMinutes",
    );
  }
}

/**
 * The mapping store is data the gateway cannot guess: when it cannot be read or written, the call
 * fails as a dependency failure (never by minting a second identity for the caller).
 */
function guardedMappings(store: UserMappingStore, logger: Logger): UserMappingStore {
  const guard =
    <A extends unknown[], R>(operation: string, run: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await run(...args);
      } catch (error) {
        logger.warn({ operation, err: describe(error) }, "identity mapping store failed");
        throw new GatewayError(
          "UPSTREAM_UNAVAILABLE",
          "The identity mapping store is unavailable. Try again.",
        );
      }
    };
  return {
    get: guard("get", store.get),
    reserve: guard("reserve", store.reserve),
    record: guard("record", store.record),
    confirm: guard("confirm", store.confirm),
    release: guard("release", store.release),
    pending: guard("pending", store.pending),
    removeByUserId: guard("removeByUserId", store.removeByUserId),
    subjectOf: guard("subjectOf", store.subjectOf),
    ownsOrOwned: guard("ownsOrOwned", store.ownsOrOwned),
    close: () => store.close(),
  };
}

export function createTokenService(deps: TokenServiceDeps): TokenService {
  const { identity, cache, logger } = deps;
  const mappings = guardedMappings(deps.mappings, logger);
  const now = deps.now ?? Date.now;
  /** One identity creation per subject at a time in this process (the store arbitrates across instances). */
  const provisioning = new Map<string, Promise<string>>();
  const provisioner = createProvisioner({
    now,
    ...deps.provisioning,
    store: mappings,
    identity,
    logger,
  });

  async function issueForUser(
    userId: string,
    scopes: AcsScope[],
    expiresInMinutes: number | undefined,
  ): Promise<TokenGrant> {
    try {
      const { token } = await cache.getOrMint({ userId, scopes, expiresInMinutes }, () =>
        identity.issueToken(userId, scopes, expiresInMinutes),
      );
      return { userId, token: token.token, expiresOn: token.expiresOn, scopes };
    } catch (error) {
      if (error instanceof UserDeletedError) {
        throw notFound();
      }
      throw error;
    }
  }

  async function ensureIdentity(subjectKey: string): Promise<string> {
    const mapped = await mappings.get(subjectKey);
    if (mapped !== undefined) {
      return mapped;
    }
    let flight = provisioning.get(subjectKey);
    if (!flight) {
      flight = provisioner.identityOf(subjectKey).finally(() => provisioning.delete(subjectKey));
      provisioning.set(subjectKey, flight);
    }
    return flight;
  }

  return {
    createUser: () => identity.createUser(),

    async issueToken(input) {
      const scopes = checkScopes(input.scopes);
      checkLifetime(input.expiresInMinutes);
      if (input.userId === undefined) {
        const created = await identity.createUserAndToken(scopes, input.expiresInMinutes);
        return { userId: created.userId, ...created.token, scopes };
      }
      assertUserId(input.userId);
      return issueForUser(input.userId, scopes, input.expiresInMinutes);
    },

    async revokeTokens(userId) {
      assertUserId(userId);
      if (await cache.isDeleted(userId)) {
        throw notFound();
      }
      await cache.invalidateUser(userId, () => identity.revokeTokens(userId));
      return now();
    },

    async deleteUser(userId) {
      assertUserId(userId);
      if (await cache.isDeleted(userId)) {
        throw notFound();
      }
      await cache.invalidateUser(userId, () => identity.deleteUser(userId), { tombstone: true });
      await mappings.removeByUserId(userId);
      return now();
    },

    userIdOf: (subjectKey) => mappings.get(subjectKey),

    async issueMyToken(subjectKey, scopesIn, expiresInMinutes) {
      const scopes = checkScopes(scopesIn);
      checkLifetime(expiresInMinutes);
      const userId = await ensureIdentity(subjectKey);
      try {
        return await issueForUser(userId, scopes, expiresInMinutes);
      } catch (error) {
        const gone =
          (error instanceof UpstreamError &&
            (error.failure === "not_found" || error.failure === "not_owned")) ||
          (error instanceof GatewayError && error.code === "NOT_FOUND");
        if (!gone) {
          throw error;
        }
        // The mapped identity was deleted (by an admin, or outside the gateway), or belongs to
        // another ACS resource, and the mapping outlived it: forget it and give the caller a
        // fresh identity, once.
        await mappings.removeByUserId(userId);
        return issueForUser(await ensureIdentity(subjectKey), scopes, expiresInMinutes);
      }
    },

    isKnownDeleted: (userId) => cache.isDeleted(userId),

    ownsOrOwned: (subjectKey, userId) => mappings.ownsOrOwned(subjectKey, userId),

    recoverPendingIdentities: () => provisioner.recover(),
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
