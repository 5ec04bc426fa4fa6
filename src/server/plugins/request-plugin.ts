import type { ApolloServerPlugin, GraphQLRequestListener } from "@apollo/server";
import type { GatewayContext } from "../../graphql/context.js";
import { firstErrorCode, type AccessLog } from "./access-log.js";
import { swapOutOfBoundsDocument } from "./document-bounds.js";
import type { createErrorLogger } from "./error-logging.js";
import { annotateOperationSpan } from "./tracing.js";

/**
 * The gateway's one Apollo plugin with per-request hooks: the document bounds, the log of
 * unexpected errors, the access line and metrics, and the operation span's name.
 *
 * One plugin and one listener object shared by every request, rather than a plugin per concern:
 * Apollo awaits `Promise.all` over every plugin's listener at each of about ten points of a
 * request, whether the listener has that hook or not, so each extra plugin costs every request a
 * promise and a microtask turn per point. Only the three hooks below exist, and the request's
 * start time is on its context (`startedAt`), so `requestDidStart` hands back one promise made
 * once instead of running an async function per request.
 */
export function createRequestPlugin(deps: {
  accessLog: AccessLog;
  logErrors: ReturnType<typeof createErrorLogger>;
}): ApolloServerPlugin<GatewayContext> {
  const { accessLog, logErrors } = deps;
  const listener: GraphQLRequestListener<GatewayContext> = {
    // Only for a document Apollo's document store does not hold yet: repeated operations skip it.
    async validationDidStart(requestContext) {
      swapOutOfBoundsDocument(requestContext);
    },
    async didEncounterErrors({ errors, operationName }) {
      logErrors(errors, operationName);
    },
    async willSendResponse(requestContext) {
      const { contextValue, operation, operationName, errors, response } = requestContext;
      // formatError ran before this hook; `errors` is the fallback for responses without a
      // single result.
      const formatted =
        response.body.kind === "single" ? response.body.singleResult.errors : undefined;
      // Without a context (a refused credential) the request took no measurable time here.
      const from = (contextValue as GatewayContext | undefined)?.startedAt;
      accessLog.record({
        contextValue,
        operation,
        operationName,
        errorCode: firstErrorCode(formatted) ?? firstErrorCode(errors),
        seconds: from === undefined ? 0 : (performance.now() - from) / 1000,
      });
      annotateOperationSpan(requestContext);
    },
  };
  const listening = Promise.resolve(listener);
  return {
    requestDidStart: () => listening,
  };
}
