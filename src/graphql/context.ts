import type { Caller } from "../auth/caller.js";
import type { Logger } from "../logger.js";
import type { TokenService } from "../tokens/token-service.js";

/** What every resolver gets. Built per request by the server (server/context.ts). */
export interface GatewayContext {
  caller: Caller;
  tokens: TokenService;
  /** Counts one token-minting call against the caller's budget; throws RATE_LIMITED when spent. */
  consumeMintBudget(): Promise<void>;
  logger: Logger;
}
