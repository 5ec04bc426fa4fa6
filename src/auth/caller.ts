import { createHash } from "node:crypto";
import { DomainError } from "../errors.js";

/** Who is calling, as the gateway decides rights. Built once per request. */
export interface Caller {
  /** The `sub` claim, or `anonymous` when AUTH_MODE=none. */
  subject: string;
  /** The `iss` claim; undefined for the anonymous development caller. */
  issuer: string | undefined;
  /** Entra ID's `oid` claim, when the token has one: whose Teams token the caller may exchange. */
  objectId?: string | undefined;
  /**
   * The value of the AUTH_EXTERNAL_ID_CLAIM claim (default `sub`): who the caller is in the
   * organisation's own terms, the directory's external id for their identity. Undefined for the
   * anonymous development caller and for a token without that claim (as a non-empty string).
   */
  externalId?: string | undefined;
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
export type AuthFailure =
  | "missing"
  | "malformed"
  | "invalid"
  | "expired"
  | "unavailable"
  /** ROUTER_SECRET is set and the request did not carry it. */
  | "router";

/** A refused credential. The message is safe to show: it never quotes the credential. */
export class AuthError extends DomainError {
  override readonly name = "AuthError";
  constructor(
    readonly reason: AuthFailure,
    message: string,
  ) {
    super("unauthenticated", message);
  }
}
