import type { Caller } from "../auth/caller.js";
import type { IdentityDirectory } from "../identity/identity-directory.js";
import type { Ownership } from "../identity/identity-mappings.js";
import type { Logger } from "../logger.js";
import type { SelfService } from "../tokens/self-service.js";
import type { TokenService } from "../tokens/token-service.js";
import type { Actor, MeteredUpstream, Usage } from "../tokens/upstream-budget.js";

/**
 * What resolvers call: built once (app/gateway-services.ts) and shared by every request's context.
 * No GraphQL in any of them; each throws `DomainError`s.
 */
export interface GatewayServices {
  /** The token operations on an identity named by its id (createUser, issueToken, ...). */
  tokens: TokenService;
  /** The caller's own identity: issueMyToken, revokeMyTokens, deleteMe. */
  selfService: SelfService;
  /** Who owns which identity, and which are gone: asked by the rights table, `me`, `_entities`. */
  ownership: Ownership;
  /**
   * ACS itself, each call charged to the acting caller: for an operation on which the gateway adds
   * no rule of its own (no cache, no mapping; the Teams exchange), so that a new ACS operation is
   * its provider method, its resolver and its rights rule. A token of a known user goes through
   * `tokens` or `selfService`, which keep the cache's rules.
   */
  upstream: MeteredUpstream;
  /**
   * The directory of identities (src/directory/): the admin queries, `updateUser`, and the records
   * behind `CommunicationUser`. Errors are domain errors (BAD_USER_INPUT, NOT_FOUND, ...).
   */
  directory: IdentityDirectory;
}

/** What every resolver gets. Built per request by the caller-context plugin (server/plugins). */
export interface GatewayContext extends GatewayServices {
  /**
   * The verified caller. Undefined only for a request that carried a valid router secret and no
   * bearer token: such a request may read `_service { sdl }` and nothing else (the rights table).
   */
  caller: Caller | undefined;
  /** The caller as the services' actor, carrying this request's `usage`. */
  actor: Actor | undefined;
  /** The request id (from `x-request-id` or made), echoed in the response and in log lines. */
  requestId: string;
  /** `performance.now()` when the context was made: the access line's duration starts here. */
  startedAt: number;
  /** What this request cost (cache hits and misses, ACS calls), for its access log line. */
  usage: Usage;
  /** May this request read the subgraph schema (`_service`) without being an admin? */
  schemaReadable: boolean;
  /** The ACS resource's endpoint (never its key), for `acsEndpoint`. */
  acsEndpoint: string;
  logger: Logger;
  /**
   * The caller's own ACS identity, looked up at most once per request however many fields or
   * entity representations ask (the rights table's `owner` rule, `me`).
   */
  ownUserId(): Promise<string | undefined>;
}

/** The context a resolver sees: the rights table let it through, so a caller is known. */
export type SignedInContext = GatewayContext & { caller: Caller; actor: Actor };
