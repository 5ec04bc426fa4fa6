/**
 * The error codes the gateway itself assigns (`errors[].extensions.code`; the README's "Errors").
 * The one list: the gateway's own error mapping is typed by it (src/graphql/errors.ts).
 */
export type GatewayAssignedErrorCode =
  | "BAD_USER_INPUT"
  | "NOT_FOUND"
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "RATE_LIMITED"
  | "UPSTREAM_THROTTLED"
  | "UPSTREAM_UNAVAILABLE"
  | "REVOCATION_UNCONFIRMED"
  // APQ: extensions.persistedQuery.sha256Hash is not the sha256 of the query text sent (HTTP 400).
  | "PERSISTED_QUERY_HASH_MISMATCH"
  | "INTERNAL_SERVER_ERROR";

/**
 * Every code a call may fail with: the gateway's, those of its GraphQL server's persisted-query
 * protocol, and the client's own: `NETWORK_ERROR` (no HTTP answer), `BAD_RESPONSE` (an answer that
 * is not a GraphQL result), `TOKEN_EXPIRED` (the gateway handed out a token that is already expired
 * on this machine's clock), `IDENTITY_CHANGED` (the caller's own identity was replaced since this
 * refresher's first token: its ACS clients belong to the old one).
 */
export type GatewayErrorCode =
  | GatewayAssignedErrorCode
  | "PERSISTED_QUERY_NOT_FOUND"
  | "PERSISTED_QUERY_ID_REQUIRED"
  | "PERSISTED_QUERY_NOT_IN_LIST"
  | "NETWORK_ERROR"
  | "BAD_RESPONSE"
  | "TOKEN_EXPIRED"
  | "IDENTITY_CHANGED"
  // A code a newer gateway may send that this client does not know yet.
  | (string & {});

export interface GatewayClientErrorDetails {
  /** HTTP status of the answer, when there was one. */
  status?: number;
  /** From `extensions.retryAfterSeconds` (`RATE_LIMITED`, `UPSTREAM_THROTTLED`). */
  retryAfterSeconds?: number;
  /** The error's `extensions` as the gateway sent them (`revokedAt`, `field`, `reason`, ...). */
  extensions?: Readonly<Record<string, unknown>>;
  cause?: unknown;
}

/** A failure of a gateway call, carrying the gateway's error code. Never holds a token. */
export class GatewayClientError extends Error {
  override readonly name = "GatewayClientError";
  readonly code: GatewayErrorCode;
  readonly status: number | undefined;
  readonly retryAfterSeconds: number | undefined;
  /**
   * The gateway error's `extensions` (docs/errors.md): `revokedAt` of `REVOCATION_UNCONFIRMED`,
   * `field` and `reason` of `BAD_USER_INPUT`, ... Empty for the client's own codes.
   */
  readonly extensions: Readonly<Record<string, unknown>>;

  constructor(code: GatewayErrorCode, message: string, details: GatewayClientErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.status = details.status;
    this.retryAfterSeconds = details.retryAfterSeconds;
    this.extensions = Object.freeze({ ...details.extensions });
  }
}

export function isGatewayClientError(error: unknown): error is GatewayClientError {
  return error instanceof GatewayClientError;
}
