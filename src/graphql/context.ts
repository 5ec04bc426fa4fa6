import type { Caller } from "../auth/caller.js";
import type { Logger } from "../logger.js";
import type { Actor, TokenService } from "../tokens/token-service.js";
import type { Usage } from "../tokens/upstream-budget.js";

/** What every resolver gets. Built per request by the authentication plugin (server/plugins). */
export interface GatewayContext {
  /**
   * The verified caller. Undefined only for a request that carried a valid router secret and no
   * bearer token: such a request may read `_service { sdl }` and nothing else (the rights table).
   */
  caller: Caller | undefined;
  /** The caller as the token service's actor, carrying this request's `usage`. */
  actor: Actor | undefined;
  /** The request id (from `x-request-id` or made), echoed in the response and in log lines. */
  requestId: string;
  /** What this request cost (cache hits and misses, ACS calls), for its access log line. */
  usage: Usage;
  /** May this request read the subgraph schema (`_service`) without being an admin? */
  schemaReadable: boolean;
  tokens: TokenService;
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
