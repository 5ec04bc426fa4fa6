import type { ApiSurface } from "./api-versions.js";
import { AcsError } from "./errors.js";
import { MANAGED_IDENTITY_PATH } from "./entra.js";
import type { EmulatorOperation } from "./options.js";

/**
 * The dispatch stage: the REST API's paths (every version's spec) plus the emulator's own ones
 * (docs/emulator.md, "What it does"): its JWKS, its token introspection and its managed-identity
 * endpoint.
 */
export type Route =
  | {
      kind: "operation";
      operation: EmulatorOperation;
      identitySegment?: string;
      /** `POST /identities/{id}/token`: 2020-07-20-preview2's issue path. */
      legacyPath?: boolean;
    }
  | { kind: "jwks" }
  | { kind: "managed-identity" };

const methodNotAllowed = (method: string, pathname: string, allow: string) =>
  new AcsError(405, "MethodNotAllowed", `${method} is not allowed on ${pathname}; use ${allow}.`, {
    headers: { Allow: allow },
  });

/** The route, or throws 404 / 405. Which methods an identity path allows depends on the version. */
export function route(method: string, pathname: string): Route {
  const segments = pathname.split("/").slice(1);
  const one = (allow: string, operation: EmulatorOperation, identitySegment?: string): Route => {
    if (method !== allow) {
      throw methodNotAllowed(method, pathname, allow);
    }
    return { kind: "operation", operation, identitySegment };
  };

  if (pathname === "/.well-known/jwks.json") {
    if (method !== "GET") {
      throw methodNotAllowed(method, pathname, "GET");
    }
    return { kind: "jwks" };
  }
  if (pathname === MANAGED_IDENTITY_PATH) {
    if (method !== "GET") {
      throw methodNotAllowed(method, pathname, "GET");
    }
    return { kind: "managed-identity" };
  }
  if (pathname === "/identities") {
    return one("POST", "createIdentity");
  }
  if (pathname === "/teamsUser/:exchangeAccessToken") {
    return one("POST", "exchangeTeamsUserAccessToken");
  }
  if (pathname === "/emulator/introspect") {
    return one("POST", "introspect");
  }
  if (segments[0] === "identities" && segments[1]) {
    if (segments.length === 2) {
      if (method === "GET") {
        return { kind: "operation", operation: "getIdentity", identitySegment: segments[1] };
      }
      if (method === "PATCH") {
        return { kind: "operation", operation: "updateIdentity", identitySegment: segments[1] };
      }
      return one("DELETE", "deleteIdentity", segments[1]);
    }
    if (segments.length === 3 && segments[2] === "token") {
      const matched = one("POST", "issueAccessToken", segments[1]);
      return { ...matched, legacyPath: true } as Route;
    }
    if (segments.length === 3 && segments[2] === ":issueAccessToken") {
      return one("POST", "issueAccessToken", segments[1]);
    }
    if (segments.length === 3 && segments[2] === ":revokeAccessTokens") {
      return one("POST", "revokeAccessTokens", segments[1]);
    }
  }
  throw new AcsError(404, "NotFound", `No operation matches ${method} ${pathname}.`);
}

/** Refuses an operation the asked api-version does not have, as if its path did not exist. */
export function assertOperationInVersion(
  route: Extract<Route, { kind: "operation" }>,
  surface: ApiSurface,
  method: string,
  pathname: string,
): void {
  const { operation } = route;
  const absent = () =>
    new AcsError(
      404,
      "NotFound",
      `No operation matches ${method} ${pathname} in api-version ${surface.version}.`,
    );
  if (operation === "getIdentity" && !surface.customId) {
    throw methodNotAllowed(method, pathname, surface.legacy ? "DELETE, PATCH" : "DELETE");
  }
  if (operation === "updateIdentity" && !surface.legacy) {
    throw methodNotAllowed(method, pathname, surface.customId ? "GET, DELETE" : "DELETE");
  }
  if (
    (operation === "issueAccessToken" && Boolean(route.legacyPath) !== surface.legacy) ||
    (operation === "revokeAccessTokens" && surface.legacy)
  ) {
    throw absent();
  }
  if (operation === "exchangeTeamsUserAccessToken" && surface.teamsExchange === "none") {
    throw absent();
  }
}
