/**
 * The error codes of CONTRACT.md. Domain code throws `GatewayError`; the GraphQL layer turns it
 * (and `UpstreamError`, `UserDeletedError`, `AuthError`) into a `GraphQLError` in one place.
 */
export type ErrorCode =
  | "BAD_USER_INPUT"
  | "NOT_FOUND"
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "RATE_LIMITED"
  | "UPSTREAM_THROTTLED"
  | "UPSTREAM_UNAVAILABLE"
  | "REVOCATION_UNCONFIRMED"
  | "INTERNAL_SERVER_ERROR";

export class GatewayError extends Error {
  override readonly name = "GatewayError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extensions: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export const badInput = (message: string, field?: string) =>
  new GatewayError("BAD_USER_INPUT", message, field ? { field } : {});
export const notFound = (message = "The communication user does not exist or was deleted.") =>
  new GatewayError("NOT_FOUND", message);
export const forbidden = (message: string) => new GatewayError("FORBIDDEN", message);
