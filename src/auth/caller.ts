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

export type AuthFailure = "missing" | "malformed" | "invalid" | "expired";

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
