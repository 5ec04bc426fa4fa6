/**
 * The gateway's one error model. Every expected failure, from any layer (input rules, rights,
 * limits, the cache, ACS, caller verification), is a `DomainError` of one `kind`, named in the
 * gateway's own terms. The GraphQL edge (graphql/errors.ts) turns a kind into an error code of the
 * API (docs/errors.md) in exactly one table; nothing below the edge knows GraphQL. Anything that
 * is not a `DomainError` is a bug: logged once and masked as INTERNAL_SERVER_ERROR in production.
 *
 * `message` is always safe to show a client (it never quotes a token, key, credential or an
 * upstream body); subclasses keep diagnostic detail for logs in fields of their own.
 */
export type ErrorKind =
  /** The request's arguments can never succeed as sent (malformed id, no scopes, bad lifetime). */
  | "invalid-input"
  /** The communication user does not exist, was deleted, or belongs to another ACS resource. */
  | "not-found"
  /** No, bad, expired or foreign caller credentials. */
  | "unauthenticated"
  /** A known caller asking for something the rights table does not give it. */
  | "forbidden"
  /** The caller spent its own budget; `details.retryAfterSeconds`. */
  | "rate-limited"
  /** ACS answered 429; `details.retryAfterSeconds`. */
  | "upstream-throttled"
  /** ACS (or a store the answer depends on) could not be reached or failed. */
  | "upstream-unavailable"
  /** ACS refused the gateway's own credentials: an operator's problem, not the caller's. */
  | "upstream-misconfigured"
  /**
   * Revoked (or deleted) at ACS, but the shared cache could not record it, so another instance
   * might still serve an older token until it can; `details.revokedAt`. Retrying is safe.
   */
  | "revocation-unconfirmed";

export class DomainError extends Error {
  override readonly name: string = "DomainError";
  constructor(
    readonly kind: ErrorKind,
    message: string,
    /** Safe, structured facts a client may act on (e.g. `retryAfterSeconds`, `field`). */
    readonly details: Readonly<Record<string, unknown>> = {},
    /** The underlying failure, for the gateway's own decisions and logs; never sent to a client. */
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const NOT_FOUND_MESSAGE = "The communication user does not exist or was deleted.";

export const invalidInput = (message: string, field?: string) =>
  new DomainError("invalid-input", message, field ? { field } : {});
export const notFound = () => new DomainError("not-found", NOT_FOUND_MESSAGE);
export const forbidden = (message: string) => new DomainError("forbidden", message);
export const rateLimited = (message: string, retryAfterSeconds: number) =>
  new DomainError("rate-limited", message, { retryAfterSeconds });
