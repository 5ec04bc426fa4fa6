import type { IncomingHttpHeaders } from "node:http";
import { ANONYMOUS_ADMIN, AuthError } from "../../auth/caller.js";
import type { JwtVerifier } from "../../auth/jwt-verifier.js";
import type { Principal } from "../../auth/rights.js";
import { ROUTER_SECRET_HEADER, routerSecretMatches } from "../../auth/router-secret.js";

/** What the authentication step reads of a request: Node's parsed and raw headers. */
export interface RequestHeaders {
  headers: IncomingHttpHeaders;
  /** Alternating names and values as sent; needed to see a repeated `Authorization`. */
  rawHeaders: readonly string[];
}

export interface AuthenticationOptions {
  /** Undefined: AUTH_MODE=none, every caller is the development admin. */
  verifier: JwtVerifier | undefined;
  /** When set, every request must carry it in `router-authorization`. */
  routerSecret: string | undefined;
  /** Development: the subgraph schema is readable by any caller. */
  production: boolean;
}

/**
 * Who is calling, once per request, before GraphQL (throws `AuthError`, answered with 401): the router secret first (nothing else is
 * looked at without it), then the bearer token. A request with a valid router secret and no
 * `Authorization` header is the router itself (reading `_service { sdl }` for composition); the
 * rights table lets it do nothing else.
 */
export function createAuthentication(options: AuthenticationOptions) {
  const { verifier, routerSecret } = options;

  return async function authenticate(request: RequestHeaders): Promise<Principal> {
    let viaRouter = false;
    if (routerSecret !== undefined) {
      if (!routerSecretMatches(request.headers[ROUTER_SECRET_HEADER], routerSecret)) {
        throw new AuthError("router", "This subgraph accepts requests only from its router.");
      }
      viaRouter = true;
    }
    const schemaReadable = viaRouter || !options.production;
    if (!verifier) {
      return { caller: ANONYMOUS_ADMIN, schemaReadable };
    }
    const authorization = singleAuthorization(request);
    if (authorization === undefined && viaRouter) {
      return { caller: undefined, schemaReadable };
    }
    return { caller: await verifier.verify(authorization), schemaReadable };
  };
}

/**
 * Node keeps only the first of repeated `Authorization` headers; two of them mean a confused or
 * smuggling client, so the request is refused instead of guessing which one counts.
 */
function singleAuthorization(request: RequestHeaders): string | undefined {
  let seen = 0;
  const raw = request.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 13 && raw[i]!.toLowerCase() === "authorization") {
      seen++;
    }
  }
  if (seen > 1) {
    throw new AuthError("malformed", "Send exactly one Authorization header.");
  }
  return request.headers.authorization;
}
