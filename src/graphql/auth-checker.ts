import type { AuthChecker } from "type-graphql";
import { forbidden } from "../errors.js";
import { assertUserId } from "../tokens/token-service.js";
import type { GatewayContext } from "./context.js";

export const ADMIN = "ADMIN";

/** `@Authorized(ADMIN)`: admin-only operations. Finer, per-user rules live in `assertMayActOn`. */
export const authChecker: AuthChecker<GatewayContext> = ({ context }, roles) =>
  roles.includes(ADMIN) ? context.caller.isAdmin : true;

/**
 * An admin may act on any user; anyone else only on the identity mapped to them. Decided before
 * any upstream call. A malformed id is BAD_USER_INPUT first, so callers learn to fix the input
 * rather than wonder about rights.
 */
export async function assertMayActOn(context: GatewayContext, userId: string): Promise<void> {
  assertUserId(userId);
  if (context.caller.isAdmin) {
    return;
  }
  const own = await context.tokens.userIdOf(context.caller.key);
  if (own !== userId) {
    throw forbidden("You may act only on your own communication user.");
  }
}
