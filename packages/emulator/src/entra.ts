import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { createTenantAuthority, type TenantAuthority } from "./authority.js";
import { AcsError } from "./errors.js";
import type { EntraMode } from "./options.js";
import { ACS_AUDIENCE, isAcsAudience, jwtPayload } from "./rules.js";
import type { TokenSigner } from "./token-signer.js";

/**
 * Entra ID for the emulator: `Authorization: Bearer` on the ACS operations, a managed-identity
 * endpoint of its own speaking the Azure App Service protocol (api-version 2019-08-01), which
 * `@azure/identity`'s ManagedIdentityCredential finds through `IDENTITY_ENDPOINT` and
 * `IDENTITY_HEADER`, and, with TLS, the OpenID token authority of a test tenant (authority.ts)
 * that ClientSecretCredential, UsernamePasswordCredential and DefaultAzureCredential's
 * EnvironmentCredential use through the `AZURE_*` settings.
 */
export const MANAGED_IDENTITY_PATH = "/msi/token";
export const MANAGED_IDENTITY_API_VERSION = "2019-08-01";
/** The tenant and managed identity the emulator pretends to be (fixed: tests may assert them). */
export const EMULATOR_TENANT_ID = "e1a7e000-0000-4000-8000-000000000001";
export const EMULATOR_MANAGED_IDENTITY_CLIENT_ID = "e1a7e000-0000-4000-8000-000000000002";
/** The test tenant's application (`AZURE_CLIENT_ID`), its service principal, and its test user. */
export const EMULATOR_CLIENT_ID = "e1a7e000-0000-4000-8000-000000000003";
const EMULATOR_SERVICE_PRINCIPAL_OBJECT_ID = "e1a7e000-0000-4000-8000-000000000004";
export const EMULATOR_USER_OBJECT_ID = "e1a7e000-0000-4000-8000-000000000005";
/** `.test` is reserved for testing (RFC 2606): the name can belong to no real directory. */
export const EMULATOR_USERNAME = "testuser@acs-emulator.test";
/** Emulator's choice: App Service tokens live about 24 h; an hour exercises refresh sooner. */
const MANAGED_IDENTITY_TOKEN_SECONDS = 3600;
const ISSUER = `https://sts.windows.net/${EMULATOR_TENANT_ID}/`;

export type BearerFailure =
  | "entra-off"
  | "malformed-token"
  | "bad-signature"
  | "wrong-issuer"
  | "wrong-tenant"
  | "wrong-audience"
  | "not-yet-valid"
  | "expired";

export interface EntraAuthority {
  readonly mode: EntraMode;
  /** The secret a caller of the managed-identity endpoint must send as `X-IDENTITY-HEADER`. */
  readonly identityHeader: string;
  /** With TLS (and Entra on or any): the test tenant's token authority; else undefined. */
  readonly tenant: TenantAuthority | undefined;
  /** The failure, or undefined when the bearer token is accepted. */
  checkBearer(token: string, now: number): Promise<BearerFailure | undefined>;
  /** `GET /msi/token`: the App Service managed-identity answer; rejects with an AcsError. */
  issue(query: URLSearchParams, headers: IncomingHttpHeaders, now: number): Promise<unknown>;
}

export function createEntraAuthority(
  mode: EntraMode,
  signer: TokenSigner,
  options: { tls?: boolean } = {},
): EntraAuthority {
  // 32 random bytes per start: the endpoint serves tokens only to whoever read the printed line.
  const identityHeader = randomBytes(32).toString("hex");
  // MSAL refuses an authority that is not https, so the authority exists only with TLS.
  const tenant =
    mode !== "off" && options.tls
      ? createTenantAuthority({
          signer,
          tenantId: EMULATOR_TENANT_ID,
          clientId: EMULATOR_CLIENT_ID,
          servicePrincipalObjectId: EMULATOR_SERVICE_PRINCIPAL_OBJECT_ID,
          userObjectId: EMULATOR_USER_OBJECT_ID,
          username: EMULATOR_USERNAME,
        })
      : undefined;
  return {
    mode,
    identityHeader,
    tenant,
    async checkBearer(token, now) {
      if (mode === "off") {
        return "entra-off";
      }
      let payload: Record<string, unknown> | undefined;
      if (mode === "on") {
        const signed: Record<string, unknown> | undefined = await signer.verify(token);
        if (!signed) {
          return jwtPayload(token) ? "bad-signature" : "malformed-token";
        }
        if (signed.iss === ISSUER) {
          // The managed-identity endpoint's token.
          payload = signed;
        } else if (tenant && signed.iss === tenant.issuer) {
          // The test tenant's token (an application's, or a user's): its issuer, tenant, times.
          const verified = await tenant.verify(token, now);
          if (verified.failure) {
            return verified.failure;
          }
          payload = verified.claims;
        } else {
          // Signed by us but by neither of the emulator's Entra endpoints (an ACS token, say).
          return "wrong-issuer";
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
    async issue(query, headers, now) {
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
      const token = await signer.sign({
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

/** The test tenant as a client sees it: `Emulator.entraAuthority`. */
export interface EmulatorEntraAuthority {
  /** `https://HOST:PORT`: `AZURE_AUTHORITY_HOST` (with `disableInstanceDiscovery: true`). */
  readonly authorityHost: string;
  readonly tenantId: string;
  /** The test application: a confidential client (secret) that also allows public-client flows. */
  readonly clientId: string;
  readonly clientSecret: string;
  /** The test user, for the password grant (`UsernamePasswordCredential`). */
  readonly username: string;
  readonly password: string;
  readonly userObjectId: string;
  /**
   * The `AZURE_*` variables `@azure/identity` reads (EnvironmentCredential), in the order the
   * command prints them: tenant, client, secret, authority host, then the user's.
   */
  readonly settings: Readonly<Record<string, string>>;
}

/** What `Emulator.entraAuthority` holds once the authority listens. */
export function describeTenant(tenant: TenantAuthority): EmulatorEntraAuthority {
  const authorityHost = tenant.authorityHost!;
  return {
    authorityHost,
    tenantId: tenant.tenantId,
    clientId: tenant.clientId,
    clientSecret: tenant.clientSecret,
    username: tenant.username,
    password: tenant.password,
    userObjectId: tenant.userObjectId,
    settings: {
      AZURE_TENANT_ID: tenant.tenantId,
      AZURE_CLIENT_ID: tenant.clientId,
      AZURE_CLIENT_SECRET: tenant.clientSecret,
      AZURE_AUTHORITY_HOST: authorityHost,
      AZURE_USERNAME: tenant.username,
      AZURE_PASSWORD: tenant.password,
    },
  };
}
