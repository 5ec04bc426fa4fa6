import {
  COMMUNICATION_CLIENTS_RESOURCE,
  TEAMS_EXTENSION_RESOURCE,
  type EntraTokenFailure,
} from "./authority.js";
import type { EntraAuthority } from "./entra.js";
import { AcsError, invalidAccessToken } from "./errors.js";
import type { Handler, HandlerContext } from "./handlers.js";
import type { Logger } from "./logger.js";
import { type ACCESS_OPERATIONS, type EmulatorOperation } from "./options.js";
import { isGuid, jwtPayload } from "./rules.js";
import { formatExpiresOn, type AcsTokenClaims, type TokenSigner } from "./token-signer.js";

/**
 * `/access/...` (2025-03-02-preview; the Teams Phone extension also 2025-06-30): what
 * `@azure/communication-common` 2.4's `AzureCommunicationTokenCredential` calls when built with
 * Entra options (`resourceEndpoint`, `tokenCredential`, `scopes`), and the assignments that decide
 * who may:
 *
 *   POST /access/entra/:exchangeAccessToken            Entra user's token (scopes
 *                                                      `https://communication.azure.com/clients/...`)
 *   POST /access/teamsExtension/:exchangeAccessToken   Teams Phone extension user's token (scope
 *                                                      `https://auth.msft.communication.azure.com/TeamsExtension.ManageCalls`)
 *
 * Both take the user's Entra token as `Authorization: Bearer` and a `{}` body, and answer 200
 * `{identity: {id}, accessToken: {token, expiresOn}}`. The Entra token is checked against the
 * emulator's own authority (authority.ts): signature, issuer, tenant, times, audience, delegated
 * scope; then the user (or its tenant) must hold an assignment for the token's application.
 */
export type AccessOperation = (typeof ACCESS_OPERATIONS)[number];

/** The exchanges authenticate with the Entra token they carry, not with HMAC or an ACS bearer. */
export const EXCHANGE_OPERATIONS: ReadonlySet<EmulatorOperation> = new Set<EmulatorOperation>([
  "exchangeEntraAccessToken",
  "exchangeTeamsExtensionAccessToken",
]);

const GUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

/**
 * The ACS identity of an Entra user (`8:acs:<resource>_wf_<tenant>_<object id>`) or a Teams Phone
 * extension user (`8:acs:<resource>_<tenant>_<object id>`): the shapes of the spec's examples,
 * derived from the user, so the same user always gets the same identity. Which GUID is which is
 * the emulator's choice (the spec's examples do not say).
 */
export function exchangedIdentityId(
  kind: "entra" | "teamsExtension",
  resourceId: string,
  tenantId: string,
  objectId: string,
): string {
  const infix = kind === "entra" ? "wf_" : "";
  return `8:acs:${resourceId}_${infix}${tenantId.toLowerCase()}_${objectId.toLowerCase()}`;
}

export function isExchangedIdentity(id: string, resourceId: string): boolean {
  return new RegExp(`^8:acs:${resourceId}_(wf_)?${GUID}_${GUID}$`, "i").test(id);
}

export type EntraPrincipalType = "user" | "group" | "tenant";
export type TeamsExtensionPrincipalType = "resourceAccount" | "user";

export interface EntraAssignment {
  objectId: string;
  tenantId: string;
  principalType: EntraPrincipalType;
  clientIds: string[];
}

export interface TeamsExtensionAssignment {
  objectId: string;
  tenantId: string;
  principalType: TeamsExtensionPrincipalType;
  clientIds?: string[];
}

export interface AccessExchangeDeps {
  resourceId: string;
  signer: TokenSigner;
  entra: EntraAuthority;
  /** Assignments present at start: the test tenant's, so its user can exchange at once. */
  initialEntraAssignments?: EntraAssignment[];
  initialTeamsExtensionAssignments?: TeamsExtensionAssignment[];
  logger?: Logger;
  /** Sub-millisecond digits of `expiresOn` (0..9999). */
  subMillisecond?: () => number;
}

/** An exchanged token lives as long as the Entra token, at most 24 hours (as a Teams user's). */
const MAX_LIFETIME_SECONDS = 24 * 3600;
const REGION = { rgn: "amer", resourceLocation: "unitedstates" } as const;

/** What each exchange requires of the Entra token, and the ACS scopes its permissions give. */
const EXCHANGES: Record<
  "entra" | "teamsExtension",
  { audience: string; permissions: ReadonlyMap<string, string> }
> = {
  entra: {
    audience: COMMUNICATION_CLIENTS_RESOURCE,
    permissions: new Map([
      ["voip", "voip"],
      ["chat", "chat"],
    ]),
  },
  teamsExtension: {
    audience: TEAMS_EXTENSION_RESOURCE,
    permissions: new Map([["teamsextension.managecalls", "voip"]]),
  },
};

type Failure = EntraTokenFailure | "no-token" | "entra-off" | "wrong-audience" | "no-scope";

const validation = (message: string, target: string) =>
  new AcsError(400, "ValidationError", message, { target });

function jsonObject(body: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch {
    throw validation("The request body is not valid JSON.", "body");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw validation("The request body must be a JSON object.", "body");
  }
  return value as Record<string, unknown>;
}

function decodeParam(ctx: HandlerContext, name: string): string {
  const raw = ctx.params?.[name] ?? "";
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

function guidParam(ctx: HandlerContext, name: "objectId" | "tenantId"): string {
  const value = decodeParam(ctx, name);
  if (!isGuid(value)) {
    throw validation(`The ${name} must be a GUID.`, name);
  }
  return value.toLowerCase();
}

function clientIdList(value: unknown, required: boolean): string[] | undefined {
  if (value === undefined || value === null) {
    if (required) {
      throw validation("ClientIds: The ClientIds field is required.", "clientIds");
    }
    return undefined;
  }
  if (!Array.isArray(value) || value.some((id) => typeof id !== "string" || !isGuid(id))) {
    throw validation("ClientIds must be an array of GUIDs.", "clientIds");
  }
  return [...new Set((value as string[]).map((id) => id.toLowerCase()))];
}

export function createAccessHandlers(deps: AccessExchangeDeps): Record<AccessOperation, Handler> {
  const { resourceId, signer, entra, logger } = deps;
  const subMillisecond = deps.subMillisecond ?? (() => Number(process.hrtime.bigint() % 10_000n));
  const entraAssignments = new Map<string, EntraAssignment>();
  for (const a of deps.initialEntraAssignments ?? []) {
    entraAssignments.set(a.objectId, a);
  }
  const teamsAssignments = new Map<string, TeamsExtensionAssignment>();
  const teamsKey = (tenantId: string, objectId: string) => `${tenantId}/${objectId}`;
  for (const a of deps.initialTeamsExtensionAssignments ?? []) {
    teamsAssignments.set(teamsKey(a.tenantId, a.objectId), a);
  }

  /** The Entra token's claims, or the reason it is refused (logged; the caller sees 401). */
  async function checkToken(
    kind: keyof typeof EXCHANGES,
    authorization: string | undefined,
    now: number,
  ): Promise<{ claims: Record<string, unknown>; acsScopes: string[] } | { failure: Failure }> {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization?.trim() ?? "");
    if (!match) {
      return { failure: "no-token" };
    }
    const token = match[1]!;
    let claims: Record<string, unknown> | undefined;
    if (entra.mode === "on") {
      // Only the test tenant's authority can vouch for a user; without TLS there is none.
      if (!entra.tenant) {
        return { failure: "wrong-issuer" };
      }
      const verified = await entra.tenant.verify(token, now);
      if (verified.failure) {
        return { failure: verified.failure };
      }
      claims = verified.claims;
    } else if (entra.mode === "any") {
      // As on the ACS operations: any unexpired JWT, signature unchecked.
      claims = jwtPayload(token);
      if (!claims) {
        return { failure: "malformed-token" };
      }
      if (typeof claims.exp !== "number" || claims.exp * 1000 <= now) {
        return { failure: "expired" };
      }
    } else {
      return { failure: "entra-off" };
    }
    const { audience, permissions } = EXCHANGES[kind];
    const aud = typeof claims.aud === "string" ? claims.aud.replace(/\/$/, "") : "";
    if (aud.toLowerCase() !== audience.toLowerCase()) {
      return { failure: "wrong-audience" };
    }
    // Delegated tokens only (a user's: `scp`); an application's token has none.
    const scp = typeof claims.scp === "string" ? claims.scp.split(" ") : [];
    const acsScopes = [...new Set(scp.flatMap((s) => permissions.get(s.toLowerCase()) ?? []))];
    if (
      acsScopes.length === 0 ||
      typeof claims.oid !== "string" ||
      !isGuid(claims.oid) ||
      typeof claims.tid !== "string" ||
      !isGuid(claims.tid)
    ) {
      return { failure: "no-scope" };
    }
    return { claims, acsScopes };
  }

  const forbidden = (message: string) => new AcsError(403, "Forbidden", message);

  function exchange(kind: keyof typeof EXCHANGES): Handler {
    return async (ctx) => {
      const checked = await checkToken(kind, ctx.authorization, ctx.now);
      if ("failure" in checked) {
        logger?.warn(
          { exchange: kind, failure: checked.failure },
          "emulator refused an Entra token",
        );
        throw invalidAccessToken();
      }
      jsonObject(ctx.body);
      ctx.admit("exchangeTeamsUserAccessToken");
      const { claims, acsScopes } = checked;
      const tid = (claims.tid as string).toLowerCase();
      const oid = (claims.oid as string).toLowerCase();
      const azp = String(claims.azp ?? claims.appid ?? "").toLowerCase();
      if (kind === "entra") {
        const assigned = [...entraAssignments.values()].some(
          (a) =>
            a.tenantId === tid &&
            a.clientIds.includes(azp) &&
            ((a.principalType === "user" && a.objectId === oid) ||
              (a.principalType === "tenant" && a.objectId === tid)),
        );
        if (!assigned) {
          throw forbidden(
            "The Entra user has no assignment to this resource for the token's application.",
          );
        }
      } else {
        const assignment = teamsAssignments.get(teamsKey(tid, oid));
        if (!assignment || (assignment.clientIds?.length && !assignment.clientIds.includes(azp))) {
          throw forbidden(
            "The Teams Phone extension user has no assignment to this resource for the token's application.",
          );
        }
      }
      const id = exchangedIdentityId(kind, resourceId, tid, oid);
      const iat = Math.floor(ctx.now / 1000);
      const exp = Math.min(claims.exp as number, iat + MAX_LIFETIME_SECONDS);
      const acsClaims: AcsTokenClaims = {
        skypeid: id.slice(2),
        scp: 1792,
        csi: String(iat),
        exp,
        rgn: REGION.rgn,
        acsScope: acsScopes.join(","),
        resourceId,
        resourceLocation: REGION.resourceLocation,
        iat,
      };
      return {
        status: 200,
        body: {
          identity: { id },
          accessToken: {
            token: await signer.sign(acsClaims),
            expiresOn: formatExpiresOn(exp * 1000, subMillisecond()),
          },
        },
        identityId: id,
      };
    };
  }

  const ENTRA_PRINCIPALS: readonly EntraPrincipalType[] = ["user", "group", "tenant"];
  const TEAMS_PRINCIPALS: readonly TeamsExtensionPrincipalType[] = ["resourceAccount", "user"];

  function entraAssignmentFrom(objectId: string, value: unknown): EntraAssignment {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw validation("An assignment must be a JSON object.", objectId);
    }
    const body = value as Record<string, unknown>;
    if (typeof body.tenantId !== "string" || !isGuid(body.tenantId)) {
      throw validation("TenantId: The TenantId field is required and must be a GUID.", "tenantId");
    }
    if (!ENTRA_PRINCIPALS.includes(body.principalType as EntraPrincipalType)) {
      throw validation(
        `PrincipalType must be one of ${ENTRA_PRINCIPALS.join(", ")}.`,
        "principalType",
      );
    }
    return {
      objectId,
      tenantId: body.tenantId.toLowerCase(),
      principalType: body.principalType as EntraPrincipalType,
      clientIds: clientIdList(body.clientIds, true)!,
    };
  }

  const notFound = (what: string) =>
    new AcsError(404, "NotFound", `No ${what} assignment exists for this object id.`);

  return {
    exchangeEntraAccessToken: exchange("entra"),
    exchangeTeamsExtensionAccessToken: exchange("teamsExtension"),

    async listEntraAssignments() {
      return { status: 200, body: { value: [...entraAssignments.values()] } };
    },

    async updateEntraAssignments(ctx) {
      const body = jsonObject(ctx.body);
      // Validate every entry before changing any: a refused request changes nothing.
      const changes = Object.entries(body).map(([key, value]) => {
        if (!isGuid(key)) {
          throw validation("Every key must be an object id (GUID).", key);
        }
        const objectId = key.toLowerCase();
        return {
          objectId,
          assignment: value === null ? null : entraAssignmentFrom(objectId, value),
        };
      });
      const written: EntraAssignment[] = [];
      for (const { objectId, assignment } of changes) {
        if (assignment === null) {
          entraAssignments.delete(objectId);
        } else {
          entraAssignments.set(objectId, assignment);
          written.push(assignment);
        }
      }
      return written.length === 0 ? { status: 204 } : { status: 200, body: { value: written } };
    },

    async getEntraAssignment(ctx) {
      const found = entraAssignments.get(guidParam(ctx, "objectId"));
      if (!found) {
        throw notFound("Entra");
      }
      return { status: 200, body: found };
    },

    async upsertEntraAssignment(ctx) {
      const objectId = guidParam(ctx, "objectId");
      const assignment = entraAssignmentFrom(objectId, jsonObject(ctx.body));
      const existed = entraAssignments.has(objectId);
      entraAssignments.set(objectId, assignment);
      return { status: existed ? 200 : 201, body: assignment };
    },

    async deleteEntraAssignment(ctx) {
      if (!entraAssignments.delete(guidParam(ctx, "objectId"))) {
        throw notFound("Entra");
      }
      return { status: 204 };
    },

    async getTeamsExtensionAssignment(ctx) {
      const found = teamsAssignments.get(
        teamsKey(guidParam(ctx, "tenantId"), guidParam(ctx, "objectId")),
      );
      if (!found) {
        throw notFound("Teams Phone extension");
      }
      return { status: 200, body: found };
    },

    async upsertTeamsExtensionAssignment(ctx) {
      const tenantId = guidParam(ctx, "tenantId");
      const objectId = guidParam(ctx, "objectId");
      const body = jsonObject(ctx.body);
      if (!TEAMS_PRINCIPALS.includes(body.principalType as TeamsExtensionPrincipalType)) {
        throw validation(
          `PrincipalType: The PrincipalType field is required, one of ${TEAMS_PRINCIPALS.join(", ")}.`,
          "principalType",
        );
      }
      const clientIds = clientIdList(body.clientIds, false);
      const assignment: TeamsExtensionAssignment = {
        objectId,
        tenantId,
        principalType: body.principalType as TeamsExtensionPrincipalType,
        ...(clientIds === undefined ? {} : { clientIds }),
      };
      const key = teamsKey(tenantId, objectId);
      const existed = teamsAssignments.has(key);
      teamsAssignments.set(key, assignment);
      return { status: existed ? 200 : 201, body: assignment };
    },

    async deleteTeamsExtensionAssignment(ctx) {
      const key = teamsKey(guidParam(ctx, "tenantId"), guidParam(ctx, "objectId"));
      if (!teamsAssignments.delete(key)) {
        throw notFound("Teams Phone extension");
      }
      return { status: 204 };
    },
  };
}
