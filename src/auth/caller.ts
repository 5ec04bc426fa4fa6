import { createHash } from "node:crypto";

/** Who is calling, as the gateway decides rights. Built once per request. */
export interface Caller {
  /** The `sub` claim, or `anonymous` when AUTH_MODE=none. */
  subject: string;
  /** The `iss` claim; undefined for the anonymous development caller. */
  issuer: string | undefined;
  roles: readonly string[];
  isAdmin: boolean;
  /**
   * Issuer-namespaced and hashed: stable, of fixed length, safe as a Redis key part, and the same
   * `sub` from two issuers never collides. Used for self-service mappings and rate limits.
   */
  key: string;
}

/**
 * 32 base64url characters (192 bits of SHA-256): no `{`, `}`, `:` or spaces, so it can sit inside a
 * Redis hash tag, and a subject of any length or alphabet gives a key of the same shape. The NUL
 * separator keeps `("a", "bc")` and `("ab", "c")` apart.
 */
export function callerKey(issuer: string | undefined, subject: string): string {
  return createHash("sha256")
    .update(`${issuer ?? ""}\u0000${subject}`)
    .digest("base64url")
    .slice(0, 32);
}

/** AUTH_MODE=none: every caller is this admin (development only; refused in production). */
export const ANONYMOUS_ADMIN: Caller = Object.freeze({
  subject: "anonymous",
  issuer: undefined,
  roles: Object.freeze(["admin"]),
  isAdmin: true,
  key: callerKey(undefined, "anonymous"),
});

/**
 * Why a credential was refused. Everything but `unavailable` is the caller's problem
 * (UNAUTHENTICATED). `unavailable` means the issuer's keys could not be fetched, so the gateway
 * could not tell: still a refusal, but one a caller should retry rather than sign in again for.
 */
export type AuthFailure = "missing" | "malformed" | "invalid" | "expired" | "unavailable";

/** A refused credential. The message is safe to show: it never quotes the credential. */
export class AuthError extends Error {
  override readonly name = "AuthError";
  constructor(
    readonly reason: AuthFailure,
    message: string,
  ) {
    super(message);
  }
}

/**
 * What a caller asks to do, as far as rights go. `userId` is the identity acted on; for
 * `issueToken` an absent `userId` means "create a user and issue its token".
 */
export type CallerAction =
  | { kind: "me" }
  | { kind: "issueMyToken" }
  | { kind: "createUser" }
  | { kind: "deleteUser"; userId: string }
  | { kind: "issueToken"; userId: string | undefined }
  | { kind: "revokeTokens"; userId: string }
  /** Federation `_entities` for `CommunicationUser`. */
  | { kind: "resolveUser"; userId: string };

/**
 * An admin may act on any user; anyone else only on the identity mapped to them. `ownUserId` is
 * that mapping (undefined: the caller has none yet, so owns nothing). Pure, so the rule is tested
 * apart from the GraphQL layer and the same rule serves resolvers and `_entities`.
 */
export function canActOnUser(
  caller: Caller,
  targetUserId: string,
  ownUserId: string | undefined,
): boolean {
  return caller.isAdmin || (ownUserId !== undefined && ownUserId === targetUserId);
}

/**
 * Whether deciding `action` needs the caller's own user id (a mapping-store read). False for
 * admins and for actions that are allowed or refused whatever the caller owns, so those cost no
 * Redis round trip and a refusal happens before any I/O.
 */
export function needsOwnUserId(caller: Caller, action: CallerAction): boolean {
  if (caller.isAdmin) {
    return false;
  }
  switch (action.kind) {
    case "issueToken":
      return action.userId !== undefined;
    case "revokeTokens":
    case "resolveUser":
      return true;
    default:
      return false;
  }
}

/**
 * The whole rights table in one place (docs/security.md states it for people):
 * - admins: everything;
 * - everyone else: `me` and `issueMyToken`; `issueToken` / `revokeTokens` / `_entities` for their
 *   own identity; never `createUser`, `deleteUser`, or `issueToken` without a user id (which would
 *   create an identity nobody maps to them, i.e. an unmetered identity factory).
 * Call before any upstream call; pass `ownUserId` when `needsOwnUserId` says so.
 */
export function isAllowed(
  caller: Caller,
  action: CallerAction,
  ownUserId?: string | undefined,
): boolean {
  if (caller.isAdmin) {
    return true;
  }
  switch (action.kind) {
    case "me":
    case "issueMyToken":
      return true;
    case "createUser":
    case "deleteUser":
      return false;
    case "issueToken":
      return action.userId !== undefined && canActOnUser(caller, action.userId, ownUserId);
    case "revokeTokens":
    case "resolveUser":
      return canActOnUser(caller, action.userId, ownUserId);
  }
}
