import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { isOriginAllowed, type CorsPolicy } from "./cors-policy.js";

/**
 * Request headers a browser may send: the caller's bearer token, JSON bodies, Apollo's CSRF
 * escape hatch for GET and multipart, and the request id the gateway echoes in its logs.
 */
const CORS_ALLOWED_HEADERS = [
  "authorization",
  "content-type",
  "apollo-require-preflight",
  "x-apollo-operation-name",
  "x-request-id",
] as const;

/** Browsers cap this anyway (Chromium at 2 hours); 10 minutes keeps policy changes quick. */
const MAX_AGE_SECONDS = 600;
const ALLOW_METHODS = "GET, POST";
const ALLOW_HEADERS = CORS_ALLOWED_HEADERS.join(", ");

/**
 * CORS for `/graphql`, as one function its `onRequest` hook calls. Returns true when it answered
 * the request (a preflight), false when the request goes on.
 *
 * - Every answer carries `Vary: Origin`: whether it may be read depends on the page's origin, so
 *   a shared cache must not hand one origin's answer to another.
 * - An origin the policy allows gets `Access-Control-Allow-Origin` (its own origin, never `*`)
 *   and may read `x-request-id`. No credentials: bearer tokens travel in `Authorization`, never
 *   in cookies. Any other origin, or none, gets no `Access-Control-*` header at all.
 * - An allowed origin's preflight is answered here, before Apollo's CSRF check (which would
 *   refuse a bare `OPTIONS`): 204 with the methods, headers and max age, or 400 when it lacks
 *   `Access-Control-Request-Method`. Any other `OPTIONS` falls through to a hidden route that
 *   answers 404. Apollo's CSRF prevention still guards simple (non-preflighted) requests,
 *   whatever their origin.
 *
 * These are @fastify/cors's answers for this policy, and `test/server/cors.test.ts` pins them
 * header by header. It is written here rather than taken from the plugin because the plugin
 * copies its whole options object and makes two closures for every request, preflight or not,
 * which cost about a tenth of a `{ __typename }` request's CPU; here every value is fixed at
 * start and a request without `Origin` costs one header.
 */
export function createCors(policy: CorsPolicy) {
  return function applyCors(request: FastifyRequest, reply: FastifyReply): boolean {
    reply.header("vary", "Origin");
    const origin = request.headers.origin;
    if (origin === undefined || !isOriginAllowed(policy, origin)) {
      return false;
    }
    reply.header("access-control-allow-origin", origin);
    reply.header("access-control-expose-headers", "x-request-id");
    if (request.raw.method !== "OPTIONS") {
      return false;
    }
    if (request.headers["access-control-request-method"] === undefined) {
      reply.code(400).type("text/plain").send("Invalid Preflight Request");
      return true;
    }
    reply
      .header("access-control-allow-methods", ALLOW_METHODS)
      .header("access-control-allow-headers", ALLOW_HEADERS)
      .header("access-control-max-age", String(MAX_AGE_SECONDS))
      // Safari waits for a body unless a 204 says it has none.
      .header("content-length", "0")
      .code(204)
      .send();
    return true;
  };
}

/**
 * The route that lets Fastify accept `OPTIONS` at all in this context; a preflight the CORS hook
 * did not answer (another origin, or none) is not one this server takes: 404.
 */
export function registerPreflightRoute(fastify: FastifyInstance): void {
  fastify.options("*", (_request, reply) => {
    reply.callNotFound();
  });
}
