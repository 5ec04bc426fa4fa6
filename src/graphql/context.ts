import type { Caller } from "../auth/caller.js";
import type { Logger } from "../logger.js";
import type { TokenService } from "../tokens/token-service.js";

/** What every resolver gets. Built per request by the authentication plugin (server/plugins). */
export interface GatewayContext {
  /**
   * The verified caller. Undefined only for a request that carried a valid router secret and no
   * bearer token: such a request may read `_service { sdl }` and nothing else (the rights table).
   */
  caller: Caller | undefined;
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
export type SignedInContext = GatewayContext & { caller: Caller };
