import { unwrapResolverError } from "@apollo/server/errors";
import { GraphQLError, type GraphQLFormattedError } from "graphql";
import { AuthenticationError, AuthorizationError } from "type-graphql";
import { AuthError } from "../auth/caller.js";
import { UserDeletedError } from "../cache/token-cache.js";
import { GatewayError, type ErrorCode } from "../errors.js";
import { UpstreamError } from "../identity/upstream-error.js";
import type { Logger } from "../logger.js";

interface Mapped {
  code: ErrorCode;
  message: string;
  extensions?: Record<string, unknown>;
}

const UPSTREAM_UNAVAILABLE =
  "Azure Communication Services could not be reached or failed. Try again.";

/**
 * Every expected failure, from whichever layer, to the codes of CONTRACT.md. The only place
 * `UpstreamError` (and through it the ACS RestError) becomes a client-visible error.
 */
export function classify(error: unknown): Mapped | undefined {
  if (error instanceof GatewayError) {
    return { code: error.code, message: error.message, extensions: error.extensions };
  }
  if (error instanceof UpstreamError) {
    switch (error.failure) {
      case "not_found":
      case "not_owned":
        return {
          code: "NOT_FOUND",
          message: "The communication user does not exist or was deleted.",
        };
      case "throttled":
        return {
          code: "UPSTREAM_THROTTLED",
          message: "Azure Communication Services is throttling this resource. Try again later.",
          extensions: { retryAfterSeconds: error.options.retryAfterSeconds ?? 1 },
        };
      case "invalid":
        return {
          code: "BAD_USER_INPUT",
          message: "Azure Communication Services refused the request's input.",
        };
      case "unauthorized":
      case "unavailable":
        return { code: "UPSTREAM_UNAVAILABLE", message: UPSTREAM_UNAVAILABLE };
    }
  }
  if (error instanceof UserDeletedError) {
    return { code: "NOT_FOUND", message: "The communication user does not exist or was deleted." };
  }
  if (error instanceof AuthError) {
    return { code: "UNAUTHENTICATED", message: error.message };
  }
  if (error instanceof AuthorizationError) {
    return { code: "FORBIDDEN", message: "This operation is for admins only." };
  }
  if (error instanceof AuthenticationError) {
    return { code: "UNAUTHENTICATED", message: "Sign in to call this operation." };
  }
  return undefined;
}

/** Raised in the request context (before any resolver), with an HTTP status Apollo honours. */
export function contextError(
  code: "UNAUTHENTICATED" | "RATE_LIMITED",
  message: string,
  status: number,
  extensions: Record<string, unknown> = {},
): GraphQLError {
  return new GraphQLError(message, { extensions: { code, ...extensions, http: { status } } });
}

/**
 * Apollo's `formatError`. Known failures get their contract code and a safe message (never the
 * original message of an unknown error, which may quote an upstream body). Unknown errors are
 * logged once, here, and masked in production. Apollo's own codes (parse, validation, variable
 * coercion) pass through.
 */
export function createFormatError(options: { production: boolean; logger: Logger }) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = unwrapResolverError(error);
    const mapped = classify(original);
    if (mapped) {
      return {
        message: mapped.message,
        ...(formatted.locations ? { locations: formatted.locations } : {}),
        ...(formatted.path ? { path: formatted.path } : {}),
        extensions: { code: mapped.code, ...mapped.extensions },
      };
    }
    const code = formatted.extensions?.code;
    if (typeof code === "string" && code !== "INTERNAL_SERVER_ERROR") {
      return formatted; // GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, BAD_USER_INPUT, ...
    }
    options.logger.error(
      {
        err:
          original instanceof Error
            ? { name: original.name, message: original.message, stack: original.stack }
            : String(original),
        path: formatted.path,
      },
      "unexpected error while resolving",
    );
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
