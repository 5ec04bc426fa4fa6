import { UserDeletedError, type TokenCache } from "../cache/token-cache.js";
import { DomainError, invalidInput, notFound } from "../errors.js";
import type { IdentityProvider, IssuedToken } from "../identity/identity-provider.js";
import { createKnownMappings, type KnownMappings } from "../identity/known-mappings.js";
import { createProvisioner, type ProvisionerOptions } from "../identity/provisioning.js";
import type { UserMappingStore } from "../identity/user-mapping-store.js";
import { UpstreamError } from "../identity/upstream-error.js";
import type { Logger } from "../logger.js";
import { meterUpstream, type Actor, type UpstreamBudget } from "./upstream-budget.js";
import { wrapMethods } from "../wrap-methods.js";
import {
  isAcsScope,
  isAcsUserId,
  isValidLifetime,
  MAX_TOKEN_LIFETIME_MINUTES,
  MIN_TOKEN_LIFETIME_MINUTES,
  normalizeScopes,
  type AcsScope,
} from "./scopes.js";

export type { Actor } from "./upstream-budget.js";

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

export interface TeamsExchangeInput {
  /** The Teams user's Entra ID access token (audience: ACS's Teams.ManageCalls/Chats scopes). */
  teamsToken: string;
  /** The Entra ID application (client) id the token was issued to. */
  appId: string;
  /** The Teams user's Entra ID object id (`oid`). */
  userObjectId: string;
}

export interface TeamsGrant extends IssuedToken {
  userObjectId: string;
}

/**
 * The token rules (scopes, lifetimes, cache, revocation, self-service identities). Knows nothing
 * of GraphQL; throws `DomainError`s. Every ACS call goes through the metered upstream, so each one
 * is charged to the acting caller's budget (a cache hit reaches no upstream and costs nothing).
 */
export interface TokenService {
  createUser(actor: Actor): Promise<string>;
  issueToken(actor: Actor, input: IssueTokenInput): Promise<TokenGrant>;
  /** @returns when the revocation took effect (epoch ms) */
  revokeTokens(actor: Actor, userId: string): Promise<number>;
  /** @returns when the user was deleted (epoch ms) */
  deleteUser(actor: Actor, userId: string): Promise<number>;
  /** The ACS identity mapped to a signed-in caller (`Caller.key`), if any. */
  userIdOf(subjectKey: string): Promise<string | undefined>;
  /** The caller's own token; its identity is created and mapped on first use. */
  issueMyToken(
    actor: Actor,
    scopes: readonly AcsScope[],
    expiresInMinutes?: number,
  ): Promise<TokenGrant>;
  /** Revokes every token of the caller's own identity; `not-found` when the caller has none. */
  revokeMyTokens(actor: Actor): Promise<{ userId: string; revokedAt: number }>;
  /**
   * Deletes the caller's own identity at ACS, its cached tokens and its mapping (erasure); the next
   * `issueMyToken` makes a new identity. `not-found` when the caller has none.
   */
  deleteMe(actor: Actor): Promise<{ userId: string; deletedAt: number }>;
  /** A Teams user's ACS token. Never cached: see docs/security.md ("Teams users"). */
  exchangeTeamsToken(actor: Actor, input: TeamsExchangeInput): Promise<TeamsGrant>;
  /** For federation `_entities`: is the user known to be deleted (tombstone)? */
  isKnownDeleted(userId: string): Promise<boolean>;
  /**
   * Is or was `userId` the caller's own identity (also after it was deleted or replaced)? The
   * rights check for revoking tokens: a former owner may still revoke what was theirs.
   */
  ownsOrOwned(subjectKey: string, userId: string): Promise<boolean>;
  /** Confirms self-service identities a crash left pending (called at start). */
  recoverPendingIdentities(): Promise<number>;
  /** Stops background clean-ups still waiting for the mapping store (at shutdown). */
  close(): void;
}

/** An identity change, for the audit trail (who changed which identity). */
export interface AuditEvent {
  event: "identity.created" | "tokens.revoked" | "identity.deleted";
  userId: string;
  actor: Actor;
  /** How: an admin operation, or the caller's own identity (self-service). */
  via: "admin" | "self-service";
}

export interface TokenServiceDeps {
  /** Told of every identity change after ACS accepted it. @default nothing */
  audit?: (event: AuditEvent) => void;
  identity: IdentityProvider;
  /** Charged once per ACS call on behalf of a caller; throws `rate-limited` when spent. */
  budget: UpstreamBudget;
  cache: TokenCache;
  mappings: UserMappingStore;
  /**
   * Mappings this process has seen, read by `issueMyToken` before the store (known-mappings.ts).
   * @default 10,000 entries for at most 60 s
   */
  knownMappings?: KnownMappings;
  logger: Logger;
  now?: () => number;
  /** Provisioning knobs (lease, waits, test hooks); the store and ACS client come from above. */
  provisioning?: Omit<ProvisionerOptions, "store" | "identity" | "logger">;
}

/** Throws `invalid-input` for anything ACS would refuse, so no upstream call is spent on it. */
export function assertUserId(userId: string): void {
  if (!isAcsUserId(userId)) {
    throw invalidInput(
      "userId is not an ACS communication user id (8:acs:<resource>_<user>).",
      "userId",
    );
  }
}

function checkScopes(scopes: readonly AcsScope[]): AcsScope[] {
  if (scopes.length === 0) {
    throw invalidInput("scopes must name at least one scope.", "scopes");
  }
  if (scopes.length > 16) {
    throw invalidInput("scopes may list at most 16 entries.", "scopes");
  }
  if (!scopes.every(isAcsScope)) {
    throw invalidInput("scopes holds an unknown scope.", "scopes");
  }
  return normalizeScopes(scopes);
}

function checkLifetime(minutes: number | undefined): void {
  if (minutes !== undefined && !isValidLifetime(minutes)) {
    throw invalidInput(
      `expiresInMinutes must be a whole number from ${MIN_TOKEN_LIFETIME_MINUTES} to ${MAX_TOKEN_LIFETIME_MINUTES}.`,
      "expiresInMinutes",
    );
  }
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Entra ID access tokens are JWTs of a few KB; anything far larger is not one. */
const MAX_TEAMS_TOKEN_LENGTH = 16 * 1024;

function checkTeamsInput(input: TeamsExchangeInput): void {
  if (
    input.teamsToken.length === 0 ||
    input.teamsToken.length > MAX_TEAMS_TOKEN_LENGTH ||
    !/^[\w-]+\.[\w-]+\.[\w-]*$/.test(input.teamsToken)
  ) {
    throw invalidInput(
      "teamsToken must be the Teams user's Entra ID access token (a JWT).",
      "teamsToken",
    );
  }
  if (!GUID.test(input.appId)) {
    throw invalidInput("appId must be the Entra ID application (client) id, a GUID.", "appId");
  }
  if (!GUID.test(input.userObjectId)) {
    throw invalidInput(
      "userObjectId must be the Teams user's Entra ID object id, a GUID.",
      "userObjectId",
    );
  }
}

/**
 * The mapping store is data the gateway cannot guess: when it cannot be read or written, the call
 * fails as a dependency failure (never by minting a second identity for the caller).
 */
function guardedMappings(store: UserMappingStore, logger: Logger): UserMappingStore {
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
          // Kept for the provisioner, which tells "nothing was sent" from "may have been written".
          { cause: error },
        );
      }
    },
    { except: ["close"] },
  );
}

/** ACS says the identity is gone (deleted, or another resource's): its mapping may be forgotten. */
function isGone(error: unknown): boolean {
  return (
    (error instanceof UpstreamError &&
      (error.failure === "not_found" || error.failure === "not_owned")) ||
    (error instanceof DomainError && error.kind === "not-found")
  );
}

export function createTokenService(deps: TokenServiceDeps): TokenService {
  const { cache, logger } = deps;
  // The only handle on ACS below: every call is charged to the caller it is made for.
  const acs = meterUpstream(deps.identity, deps.budget);
  const mappings = guardedMappings(deps.mappings, logger);
  const known = deps.knownMappings ?? createKnownMappings();
  const now = deps.now ?? Date.now;
  const audit = deps.audit ?? (() => {});
  const via = (actor: Actor, self: boolean) => (self || !actor.isAdmin ? "self-service" : "admin");
  /** One identity creation per subject at a time in this process (the store arbitrates across instances). */
  const provisioning = new Map<string, Promise<string>>();
  // The provisioner gets no raw ACS handle: its creates are the caller's (charged, passed per
  // call below), its compensating deletes the gateway's own clean-up (uncharged, named so).
  const provisioner = createProvisioner({
    now,
    ...deps.provisioning,
    store: mappings,
    // Background clean-ups log once when they start waiting for the store, not per retry.
    cleanupStore: deps.mappings,
    identity: {
      createUser: () =>
        Promise.reject(new Error("identityOf is always given a charged createUser")),
      deleteUser: (userId) => acs.uncharged.deleteUser(userId),
    },
    logger,
  });

  async function issueForUser(
    actor: Actor,
    userId: string,
    scopes: AcsScope[],
    expiresInMinutes: number | undefined,
  ): Promise<TokenGrant> {
    try {
      const { token, cached } = await cache.getOrMint({ userId, scopes, expiresInMinutes }, () =>
        acs.issueToken(actor, userId, scopes, expiresInMinutes),
      );
      if (actor.usage) {
        actor.usage[cached ? "cacheHits" : "cacheMisses"]++;
      }
      return { userId, token: token.token, expiresOn: token.expiresOn, scopes };
    } catch (error) {
      if (error instanceof UserDeletedError) {
        throw notFound();
      }
      throw error;
    }
  }

  /**
   * The revoke/delete bracket of the cache around the upstream call (docs/caching.md, "Revocation
   * and deletion: what is guaranteed"): the one place the service asks the cache to invalidate a
   * user.
   */
  async function invalidate(
    userId: string,
    upstream: () => Promise<void>,
    tombstone: boolean,
  ): Promise<{ at: number; confirmed: boolean }> {
    if (await cache.isDeleted(userId)) {
      throw notFound();
    }
    const { confirmed } = await cache.invalidateUser(userId, upstream, { tombstone });
    return { at: now(), confirmed };
  }

  /** Forgets a deleted identity's mapping, in the store and in this process. */
  async function forgetMapping(userId: string): Promise<void> {
    const subjectKey = await mappings.removeByUserId(userId);
    if (subjectKey !== undefined) {
      known.forget(subjectKey);
    }
  }

  /** The caller's identity for the token path: may be stale (known-mappings.ts says why that is safe). */
  async function ensureIdentity(actor: Actor): Promise<string> {
    const remembered = known.get(actor.key);
    if (remembered !== undefined) {
      return remembered;
    }
    // Confirmed or pending: a pending identity is already the caller's (provisioning.ts).
    const mapped = await provisioner.currentIdentity(actor.key);
    if (mapped !== undefined) {
      known.remember(actor.key, mapped);
      return mapped;
    }
    let flight = provisioning.get(actor.key);
    if (!flight) {
      flight = provisioner
        .identityOf(actor.key, async () => {
          const userId = await acs.createUser(actor);
          audit({ event: "identity.created", userId, actor, via: "self-service" });
          return userId;
        })
        .then((userId) => {
          known.remember(actor.key, userId);
          return userId;
        })
        .finally(() => provisioning.delete(actor.key));
      provisioning.set(actor.key, flight);
    }
    return flight;
  }

  async function ownIdentity(actor: Actor): Promise<string> {
    // A pending identity counts: its token may be in the caller's hands, so revoking or deleting
    // it must not answer NOT_FOUND.
    const userId = await provisioner.currentIdentity(actor.key);
    if (userId === undefined) {
      throw new DomainError("not-found", "You have no communication identity yet.");
    }
    return userId;
  }

  async function revokeIdentity(actor: Actor, userId: string, self: boolean): Promise<number> {
    const { at, confirmed } = await invalidate(
      userId,
      () => acs.revokeTokens(actor, userId),
      false,
    );
    audit({ event: "tokens.revoked", userId, actor, via: via(actor, self) });
    return confirmedAt(confirmed, at);
  }

  async function deleteIdentity(actor: Actor, userId: string, self: boolean): Promise<number> {
    const { at, confirmed } = await invalidate(userId, () => acs.deleteUser(actor, userId), true);
    audit({ event: "identity.deleted", userId, actor, via: via(actor, self) });
    // The identity is gone at ACS whatever the cache could record: its mapping goes too.
    await forgetMapping(userId);
    return confirmedAt(confirmed, at);
  }

  return {
    async createUser(actor) {
      const userId = await acs.createUser(actor);
      audit({ event: "identity.created", userId, actor, via: "admin" });
      return userId;
    },

    async issueToken(actor, input) {
      const scopes = checkScopes(input.scopes);
      checkLifetime(input.expiresInMinutes);
      if (input.userId === undefined) {
        const created = await acs.createUserAndToken(actor, scopes, input.expiresInMinutes);
        audit({ event: "identity.created", userId: created.userId, actor, via: "admin" });
        return { userId: created.userId, ...created.token, scopes };
      }
      assertUserId(input.userId);
      return issueForUser(actor, input.userId, scopes, input.expiresInMinutes);
    },

    async revokeTokens(actor, userId) {
      assertUserId(userId);
      return revokeIdentity(actor, userId, false);
    },

    async deleteUser(actor, userId) {
      assertUserId(userId);
      return deleteIdentity(actor, userId, false);
    },

    userIdOf: (subjectKey) => mappings.get(subjectKey),

    async issueMyToken(actor, scopesIn, expiresInMinutes) {
      const scopes = checkScopes(scopesIn);
      checkLifetime(expiresInMinutes);
      const userId = await ensureIdentity(actor);
      try {
        return await issueForUser(actor, userId, scopes, expiresInMinutes);
      } catch (error) {
        if (!isGone(error)) {
          throw error;
        }
        // The mapped identity was deleted (by an admin, or outside the gateway), or belongs to
        // another ACS resource, and the mapping outlived it: forget it and give the caller a
        // fresh identity, once. The mapping may have been this process's memory of one that
        // another instance already removed (deleteMe there): that memory goes either way.
        known.forget(actor.key);
        await forgetMapping(userId);
        return issueForUser(actor, await ensureIdentity(actor), scopes, expiresInMinutes);
      }
    },

    async revokeMyTokens(actor) {
      const userId = await ownIdentity(actor);
      return { userId, revokedAt: await revokeIdentity(actor, userId, true) };
    },

    async deleteMe(actor) {
      const userId = await ownIdentity(actor);
      try {
        return { userId, deletedAt: await deleteIdentity(actor, userId, true) };
      } catch (error) {
        if (!isGone(error)) {
          throw error;
        }
        // Already gone at ACS (an earlier deleteMe that lost its answer, or an admin): the
        // caller's erasure is complete once the mapping goes too.
        await forgetMapping(userId);
        return { userId, deletedAt: now() };
      }
    },

    async exchangeTeamsToken(actor, input) {
      checkTeamsInput(input);
      const token = await acs.exchangeTeamsToken(actor, input);
      return { ...token, userObjectId: input.userObjectId };
    },

    isKnownDeleted: (userId) => cache.isDeleted(userId),

    ownsOrOwned: (subjectKey, userId) => mappings.ownsOrOwned(subjectKey, userId),

    recoverPendingIdentities: () => provisioner.recover(),
    close: () => provisioner.close(),
  };
}

/**
 * The upstream change succeeded, but the shared cache could not record the invalidation (Redis
 * unreachable): another instance may still serve an older token until this one replays it. Say so
 * instead of OK; a retry that reaches Redis confirms (docs/caching.md).
 */
function confirmedAt(confirmed: boolean, at: number): number {
  if (!confirmed) {
    throw new DomainError(
      "revocation-unconfirmed",
      "ACS took the change, but the token cache could not confirm that no gateway instance still serves a token issued before it. A retry confirms it once the cache is reachable.",
      { revokedAt: new Date(at).toISOString() },
    );
  }
  return at;
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
