import { unwrapResolverError } from "@apollo/server/errors";
import { GraphQLError, type GraphQLFormattedError } from "graphql";
import { DomainError, type ErrorKind } from "../errors.js";

/**
 * The error codes of the API (docs/errors.md) that the gateway itself assigns. The client
 * package publishes the same list (`GatewayAssignedErrorCode`); the gateway does not import it, so
 * that the image builds without the client's sources, and test/graphql/error-codes.test.ts fails
 * the type check when the two differ.
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
  | "PERSISTED_QUERY_HASH_MISMATCH"
  | "INTERNAL_SERVER_ERROR";

/**
 * The one table from the domain's error kinds to the contract's codes. An operator's problem
 * (ACS refusing the gateway's own key) is UPSTREAM_UNAVAILABLE to clients: they can do nothing
 * about it but retry, and it is logged, counted and reported by /readyz as a configuration fault.
 */
const CODE: Readonly<Record<ErrorKind, ErrorCode>> = {
  "invalid-input": "BAD_USER_INPUT",
  "not-found": "NOT_FOUND",
  unauthenticated: "UNAUTHENTICATED",
  forbidden: "FORBIDDEN",
  "rate-limited": "RATE_LIMITED",
  "upstream-throttled": "UPSTREAM_THROTTLED",
  "upstream-unavailable": "UPSTREAM_UNAVAILABLE",
  "upstream-misconfigured": "UPSTREAM_UNAVAILABLE",
  "revocation-unconfirmed": "REVOCATION_UNCONFIRMED",
};

interface Mapped {
  code: ErrorCode;
  message: string;
  extensions: Readonly<Record<string, unknown>>;
}

/** A domain failure as the client sees it; undefined for anything else (a bug). */
export function classify(error: unknown): Mapped | undefined {
  if (error instanceof DomainError) {
    return { code: CODE[error.kind], message: error.message, extensions: error.details };
  }
  return undefined;
}

/** Raised in the request context (before any resolver), with an HTTP status Apollo honours. */
export function contextError(error: DomainError, status: number): GraphQLError {
  const mapped = classify(error)!;
  return new GraphQLError(mapped.message, {
    extensions: { code: mapped.code, ...mapped.extensions, http: { status } },
  });
}

/**
 * An APQ request whose `extensions.persistedQuery.sha256Hash` is not the sha256 of its `query`.
 * Apollo Server 5 refuses it with HTTP 400 but a GraphQLError without a code ("provided sha does
 * not match query"), which would format as INTERNAL_SERVER_ERROR and be logged as a bug. It is the
 * client's mistake: answered with Apollo Router's code for it, and not logged.
 */
export function isPersistedQueryHashMismatch(error: unknown): boolean {
  return (
    error instanceof GraphQLError &&
    error.extensions.code === undefined &&
    error.message === "provided sha does not match query"
  );
}

export const PERSISTED_QUERY_HASH_MISMATCH_MESSAGE =
  "The persisted query's sha256Hash does not match the sha256 of the query text sent with it.";

/** graphql-js appends suggestions (`Did you mean the enum value "VOIP"?`): schema hints. */
const SUGGESTION = / Did you mean [^]*$/;

/** Is this an error the gateway did not expect (a bug), rather than an answer to a bad request? */
export function isUnexpected(formatted: GraphQLFormattedError, error: unknown): boolean {
  if (classify(unwrapResolverError(error)) || isPersistedQueryHashMismatch(error)) {
    return false;
  }
  const code = formatted.extensions?.code;
  return typeof code !== "string" || code === "INTERNAL_SERVER_ERROR";
}

/**
 * Apollo's `formatError`. Known failures get their contract code and a safe message (never the
 * original message of an unknown error, which may quote an upstream body). Unknown errors are
 * masked in production (they are logged once per request by the error-logging plugin). Apollo's
 * own codes (parse, validation, variable coercion) pass through, without graphql-js's "Did you
 * mean" suggestions in production, which would describe the schema to a caller who may not
 * introspect it.
 */
export function createFormatError(options: { production: boolean }) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const mapped = classify(unwrapResolverError(error));
    if (mapped) {
      return {
        message: mapped.message,
        ...(formatted.locations ? { locations: formatted.locations } : {}),
        ...(formatted.path ? { path: formatted.path } : {}),
        extensions: { code: mapped.code, ...mapped.extensions },
      };
    }
    if (isPersistedQueryHashMismatch(error)) {
      return {
        message: PERSISTED_QUERY_HASH_MISMATCH_MESSAGE,
        extensions: { code: "PERSISTED_QUERY_HASH_MISMATCH" satisfies ErrorCode },
      };
    }
    if (!isUnexpected(formatted, error)) {
      // GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, BAD_USER_INPUT (coercion), ...
      return options.production && SUGGESTION.test(formatted.message)
        ? { ...formatted, message: formatted.message.replace(SUGGESTION, "") }
        : formatted;
    }
    if (options.production) {
      return {
        message: "Internal server error",
        ...(formatted.path ? { path: formatted.path } : {}),
        extensions: { code: "INTERNAL_SERVER_ERROR" },
      };
    }
    return { ...formatted, extensions: { ...formatted.extensions, code: "INTERNAL_SERVER_ERROR" } };
  };
}
