import { unwrapResolverError } from "@apollo/server/errors";
import type { GraphQLError } from "graphql";
import type { Logger } from "../../logger.js";

/**
 * Logs the errors nobody expected (bugs, not answers such as NOT_FOUND) once per request and
 * kind: a request that triggers the same failure on 900 fields writes one line with a count, not
 * 900 lines with stacks.
 */
export function createErrorLogger(
  logger: Logger,
  isUnexpected: (error: GraphQLError) => boolean,
): (errors: readonly GraphQLError[], operationName: string | null | undefined) => void {
  return (errors, operationName) => {
    const seen = new Map<string, { error: unknown; count: number; path: unknown }>();
    for (const error of errors) {
      if (!isUnexpected(error)) {
        continue;
      }
      const original = unwrapResolverError(error);
      const key =
        original instanceof Error ? `${original.name}\0${original.message}` : String(original);
      const entry = seen.get(key);
      if (entry) {
        entry.count++;
      } else {
        seen.set(key, { error: original, count: 1, path: error.path });
      }
    }
    for (const { error, count, path } of seen.values()) {
      logger.error(
        {
          err:
            error instanceof Error
              ? { name: error.name, message: error.message, stack: error.stack }
              : String(error),
          path,
          count,
          operationName,
        },
        "unexpected error while resolving",
      );
    }
  };
}
