import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { AcsError } from "./errors.js";
import type { EntraMode } from "./options.js";
import { ACS_AUDIENCE, isAcsAudience, jwtPayload } from "./rules.js";
import type { TokenSigner } from "./token-signer.js";

/**
 * Entra ID for the emulator: `Authorization: Bearer` on the ACS operations, and a managed-identity
 * endpoint of its own speaking the Azure App Service protocol (api-version 2019-08-01), which
 * `@azure/identity`'s ManagedIdentityCredential finds through `IDENTITY_ENDPOINT` and
 * `IDENTITY_HEADER`.
 */
export const MANAGED_IDENTITY_PATH = "/msi/token";
export const MANAGED_IDENTITY_API_VERSION = "2019-08-01";
/** The tenant and managed identity the emulator pretends to be (fixed: tests may assert them). */
export const EMULATOR_TENANT_ID = "e1a7e000-0000-4000-8000-000000000001";
export const EMULATOR_MANAGED_IDENTITY_CLIENT_ID = "e1a7e000-0000-4000-8000-000000000002";
/** Emulator's choice: App Service tokens live about 24 h; an hour exercises refresh sooner. */
const MANAGED_IDENTITY_TOKEN_SECONDS = 3600;
const ISSUER = `https://sts.windows.net/${EMULATOR_TENANT_ID}/`;

export type BearerFailure =
  "entra-off" | "malformed-token" | "bad-signature" | "wrong-audience" | "expired";

export interface EntraAuthority {
  readonly mode: EntraMode;
  /** The secret a caller of the managed-identity endpoint must send as `X-IDENTITY-HEADER`. */
  readonly identityHeader: string;
  /** The failure, or undefined when the bearer token is accepted. */
  checkBearer(token: string, now: number): BearerFailure | undefined;
  /** `GET /msi/token`: the App Service managed-identity answer, or an AcsError. */
  issue(query: URLSearchParams, headers: IncomingHttpHeaders, now: number): unknown;
}

export function createEntraAuthority(mode: EntraMode, signer: TokenSigner): EntraAuthority {
  // 32 random bytes per start: the endpoint serves tokens only to whoever read the printed line.
  const identityHeader = randomBytes(32).toString("hex");
  return {
    mode,
    identityHeader,
    checkBearer(token, now) {
      if (mode === "off") {
        return "entra-off";
      }
      let payload: Record<string, unknown> | undefined;
      if (mode === "on") {
        payload = signer.verify(token);
        if (!payload) {
          return jwtPayload(token) ? "bad-signature" : "malformed-token";
        }
        if (payload.iss !== ISSUER) {
          // Signed by us but not by the managed-identity endpoint (an ACS token, say).
          return "bad-signature";
        }
      } else {
        payload = jwtPayload(token);
        if (!payload) {
          return "malformed-token";
        }
      }
      if (!isAcsAudience(payload.aud)) {
        return "wrong-audience";
      }
      if (typeof payload.exp !== "number" || payload.exp * 1000 <= now) {
        return "expired";
      }
      return undefined;
    },
    issue(query, headers, now) {
      if (mode === "off") {
        throw new AcsError(
          404,
          "NotFound",
          "The managed-identity endpoint is off (ACS_EMULATOR_ENTRA).",
        );
      }
      const secret = headers["x-identity-header"];
      if (secret !== identityHeader) {
        throw new AcsError(
          401,
          "Unauthorized",
          "The X-IDENTITY-HEADER header is missing or wrong.",
        );
      }
      if (query.get("api-version") !== MANAGED_IDENTITY_API_VERSION) {
        throw new AcsError(
          400,
          "BadRequest",
          `The api-version must be ${MANAGED_IDENTITY_API_VERSION}.`,
          { target: "api-version" },
        );
      }
      const resource = query.get("resource") ?? "";
      const normalized = resource.replace(/\/\.default$/, "");
      if (!isAcsAudience(normalized)) {
        // The emulator stands in for ACS only: a token for any other resource would be a lie.
        throw new AcsError(
          400,
          "BadRequest",
          `The emulator issues tokens only for the resource ${ACS_AUDIENCE}.`,
          { target: "resource" },
        );
      }
      const iat = Math.floor(now / 1000);
      const exp = iat + MANAGED_IDENTITY_TOKEN_SECONDS;
      const token = signer.sign({
        aud: ACS_AUDIENCE,
        iss: ISSUER,
        iat,
        nbf: iat,
        exp,
        appid: EMULATOR_MANAGED_IDENTITY_CLIENT_ID,
        oid: EMULATOR_MANAGED_IDENTITY_CLIENT_ID,
        sub: EMULATOR_MANAGED_IDENTITY_CLIENT_ID,
        tid: EMULATOR_TENANT_ID,
        idtyp: "app",
        ver: "1.0",
        uti: randomUUID(),
      });
      return {
        access_token: token,
        expires_on: String(exp),
        resource: normalized,
        token_type: "Bearer",
        client_id: EMULATOR_MANAGED_IDENTITY_CLIENT_ID,
      };
    },
  };
}
