import cors, { type FastifyCorsOptions } from "@fastify/cors";
import type { FastifyInstance } from "fastify";
import { isOriginAllowed, type CorsPolicy } from "./cors-policy.js";

/**
 * Request headers a browser may send: the caller's bearer token, JSON bodies, Apollo's CSRF
 * escape hatch for GET and multipart, and the request id the gateway echoes in its logs.
 */
export const CORS_ALLOWED_HEADERS = [
  "authorization",
  "content-type",
  "apollo-require-preflight",
  "x-apollo-operation-name",
  "x-request-id",
] as const;

/**
 * Registers CORS on the given (encapsulated) Fastify context. Preflights are answered in the
 * `onRequest` hook, before Apollo's CSRF check (which would answer a bare `OPTIONS` with 400), with
 * 204 and the allowed headers; an origin outside the policy gets no `Access-Control-*` header at
 * all, and its preflight a 404. Apollo's CSRF prevention still guards simple (non-preflighted)
 * requests, whatever their origin.
 */
export async function registerCors(fastify: FastifyInstance, policy: CorsPolicy): Promise<void> {
  const options: FastifyCorsOptions = {
    origin(origin, callback) {
      // No Origin header: not a cross-origin browser request (curl, servers, same-origin GET).
      callback(null, origin !== undefined && isOriginAllowed(policy, origin));
    },
    methods: ["GET", "POST"],
    allowedHeaders: [...CORS_ALLOWED_HEADERS],
    exposedHeaders: ["x-request-id"],
    // Bearer tokens travel in the Authorization header, never in cookies.
    credentials: false,
    // Browsers cap this anyway (Chromium at 2 hours); 10 minutes keeps policy changes quick.
    maxAge: 600,
    optionsSuccessStatus: 204,
    strictPreflight: true,
    hideOptionsRoute: true,
  };
  await fastify.register(cors, options);
}
