import type { ApiSurface } from "./api-versions.js";
import { isAuthorityPath } from "./authority.js";
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
      /** Path parameters of the `/access/...` assignment routes (`objectId`, `tenantId`). */
      params?: Record<string, string>;
    }
  | { kind: "jwks" }
  | { kind: "authority" }
  | { kind: "health" }
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
  if (segments[0] === "access") {
    return accessRoute(method, pathname, segments);
  }
  if (segments[0] === "" && segments[1] === "access") {
    // `${resourceEndpoint}/access/...` with an endpoint ending in `/` (as connection strings and
    // the portal write it): communication-common 2.4 sends `//access/...`. Emulator's choice.
    return accessRoute(method, pathname, segments.slice(1));
  }
  if (isAuthorityPath(pathname)) {
    return { kind: "authority" };
  }
  if (pathname === "/emulator/introspect") {
    return one("POST", "introspect");
  }
  if (pathname === "/emulator/health") {
    if (method !== "GET") {
      throw methodNotAllowed(method, pathname, "GET");
    }
    return { kind: "health" };
  }
  if (pathname === "/emulator/identities") {
    return one("GET", "listIdentities");
  }
  if (pathname === "/emulator/reset") {
    return one("POST", "reset");
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

/**
 * `/access/...` (2025-03-02-preview, 2025-06-30): the Entra-user and Teams Phone extension token
 * exchanges and the assignments that grant them. Segments stay percent-encoded, as the SDKs send
 * them; the handlers decode the ids.
 */
function accessRoute(method: string, pathname: string, segments: string[]): Route {
  const operation = (
    byMethod: Partial<Record<string, EmulatorOperation>>,
    params?: Record<string, string>,
  ): Route => {
    const found = byMethod[method];
    if (found === undefined) {
      throw methodNotAllowed(method, pathname, Object.keys(byMethod).join(", "));
    }
    return { kind: "operation", operation: found, params };
  };
  const [, area, ...rest] = segments;
  if (area === "entra") {
    if (rest.length === 1 && rest[0] === ":exchangeAccessToken") {
      return operation({ POST: "exchangeEntraAccessToken" });
    }
    if (rest.length === 1 && rest[0] === "assignments") {
      return operation({ GET: "listEntraAssignments", PATCH: "updateEntraAssignments" });
    }
    if (rest.length === 2 && rest[0] === "assignments" && rest[1]) {
      return operation(
        {
          GET: "getEntraAssignment",
          PUT: "upsertEntraAssignment",
          DELETE: "deleteEntraAssignment",
        },
        { objectId: rest[1] },
      );
    }
  }
  if (area === "teamsExtension") {
    if (rest.length === 1 && rest[0] === ":exchangeAccessToken") {
      return operation({ POST: "exchangeTeamsExtensionAccessToken" });
    }
    const [tenants, tenantId, assignments, objectId] = rest;
    if (rest.length === 4 && tenants === "tenants" && assignments === "assignments") {
      return operation(
        {
          GET: "getTeamsExtensionAssignment",
          PUT: "upsertTeamsExtensionAssignment",
          DELETE: "deleteTeamsExtensionAssignment",
        },
        { tenantId: tenantId!, objectId: objectId! },
      );
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
  if (ENTRA_ACCESS_OPERATIONS.has(operation) && !surface.entraAccess) {
    throw absent();
  }
  if (TEAMS_EXTENSION_OPERATIONS.has(operation) && !surface.teamsExtension) {
    throw absent();
  }
}

const ENTRA_ACCESS_OPERATIONS: ReadonlySet<EmulatorOperation> = new Set([
  "exchangeEntraAccessToken",
  "listEntraAssignments",
  "updateEntraAssignments",
  "getEntraAssignment",
  "upsertEntraAssignment",
  "deleteEntraAssignment",
]);
const TEAMS_EXTENSION_OPERATIONS: ReadonlySet<EmulatorOperation> = new Set([
  "exchangeTeamsExtensionAccessToken",
  "getTeamsExtensionAssignment",
  "upsertTeamsExtensionAssignment",
  "deleteTeamsExtensionAssignment",
]);
