import { AuthError } from "../../auth/caller.js";
import type { GatewayContext, GatewayServices } from "../../graphql/context.js";
import { contextError } from "../../graphql/errors.js";
import type { Logger } from "../../logger.js";
import type { Metrics } from "../metrics.js";
import type { createAuthentication, RequestHeaders } from "./authentication.js";

/**
 * The per-request GraphQL context: the principal from the authentication step, and a memoised
 * read of the caller's own identity (so the rights table, `me` and every `_entities`
 * representation share one mapping lookup). A refused credential is answered 401 before parsing.
 */
export function createCallerContext(deps: {
  authenticate: ReturnType<typeof createAuthentication>;
  services: GatewayServices;
  acsEndpoint: string;
  logger: Logger;
  metrics: Metrics;
}): (request: RequestHeaders, requestId: string) => Promise<GatewayContext> {
  const { services, acsEndpoint, logger } = deps;
  // What every request's context shares, as its prototype: a context then holds only this
  // request's own members, and Apollo's per-operation copy of it (`cloneObject`, which keeps the
  // prototype) copies those alone. Resolvers read `context.tokens` as before.
  const shared: Pick<GatewayContext, keyof GatewayServices | "acsEndpoint" | "logger"> = {
    ...services,
    acsEndpoint,
    logger,
  };
  return async (request, requestId) => {
    const startedAt = performance.now();
    let principal;
    try {
      principal = await deps.authenticate(request);
    } catch (error) {
      if (error instanceof AuthError) {
        deps.metrics.authRefusals.inc({ reason: error.reason });
        throw contextError(error, 401);
      }
      throw error;
    }
    const { caller } = principal;
    const usage = { cacheHits: 0, cacheMisses: 0, upstreamCalls: 0 };
    let ownUserId: Promise<string | undefined> | undefined;
    const own: Omit<GatewayContext, keyof typeof shared> = {
      caller,
      // A fresh object per request: the caller itself is shared by every request of a token.
      actor: caller && {
        key: caller.key,
        isAdmin: caller.isAdmin,
        issuer: caller.issuer,
        subject: caller.subject,
        externalId: caller.externalId,
        usage,
      },
      requestId,
      startedAt,
      usage,
      schemaReadable: principal.schemaReadable,
      ownUserId: () =>
        (ownUserId ??= caller
          ? services.ownership.userIdOf(caller.key)
          : Promise.resolve(undefined)),
    };
    // Object.create rather than setPrototypeOf afterwards: V8 keeps one shape for every context.
    return Object.assign(Object.create(shared) as typeof shared, own);
  };
}
