import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { base64url } from "jose";
import { jwtPayload } from "./rules.js";
import type { TokenSigner } from "./token-signer.js";

/**
 * The Entra ID token authority of the emulator's test tenant (with `ACS_EMULATOR_ENTRA` and TLS):
 * what MSAL Node (through `@azure/identity`, with `disableInstanceDiscovery: true`) asks an
 * authority for, and nothing else:
 *   GET  /{tenant}/v2.0/.well-known/openid-configuration   OpenID discovery
 *   GET  /{tenant}/discovery/v2.0/keys                     the signing key (jwks_uri)
 *   POST /{tenant}/oauth2/v2.0/token                       client_credentials (client secret) and
 *                                                          password (ROPC) grants
 * One application (a confidential client that also allows public-client flows) and one user. Tokens
 * are v2 access tokens signed RS256 with the emulator's signing key; refusals are Entra's OAuth
 * error answers (`error`, `error_description` starting `AADSTSnnnn:`, `error_codes`, ...).
 */
export interface TenantAuthority {
  readonly tenantId: string;
  /** The test application (`AZURE_CLIENT_ID`). */
  readonly clientId: string;
  readonly clientSecret: string;
  /** The test user (`AZURE_USERNAME`, `AZURE_PASSWORD`) and its object id. */
  readonly username: string;
  readonly password: string;
  readonly userObjectId: string;
  /** `https://HOST:PORT`, once listening (`AZURE_AUTHORITY_HOST`). */
  readonly authorityHost: string | undefined;
  /** `{authorityHost}/{tenantId}/v2.0`: the `iss` of every token it issues. */
  readonly issuer: string | undefined;
  /** Called once the server listens: the authority host is the emulator's own https origin. */
  listening(endpoint: string): void;
  /** The answer to a request on one of its paths (see `isAuthorityPath`). */
  handle(request: AuthorityRequest): Promise<AuthorityAnswer>;
  /** Checks a token it issued: signature, issuer, tenant, `nbf` and `exp`. Not the audience. */
  verify(token: string, now: number): Promise<VerifiedEntraToken>;
}

export interface AuthorityRequest {
  method: string;
  pathname: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  now: number;
}

export interface AuthorityAnswer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export type EntraTokenFailure =
  | "malformed-token"
  | "bad-signature"
  | "wrong-issuer"
  | "wrong-tenant"
  | "not-yet-valid"
  | "expired";

export type VerifiedEntraToken =
  { claims: Record<string, unknown>; failure?: undefined } | { failure: EntraTokenFailure };

/** The resource of `https://communication.azure.com/.default`: the ACS data plane. */
export const ACS_RESOURCE = "https://communication.azure.com";
/** The resource `@azure/communication-common`'s Entra-user exchange asks scopes of. */
export const COMMUNICATION_CLIENTS_RESOURCE = "https://communication.azure.com/clients";
/** The resource of the Teams Phone extension scopes. */
export const TEAMS_EXTENSION_RESOURCE = "https://auth.msft.communication.azure.com";

/**
 * The resources the test tenant knows, with the delegated permissions a user may consent to (the
 * ones Microsoft documents for each; the ACS data plane has none: it is called as an application).
 */
const RESOURCES: ReadonlyMap<string, readonly string[]> = new Map([
  [ACS_RESOURCE, []],
  [COMMUNICATION_CLIENTS_RESOURCE, ["VoIP", "Chat"]],
  [
    TEAMS_EXTENSION_RESOURCE,
    ["Teams.ManageCalls", "Teams.ManageChats", "TeamsExtension.ManageCalls"],
  ],
]);
const OIDC_SCOPES = new Set(["openid", "profile", "offline_access", "email"]);

/** Entra's access tokens live 60 to 90 minutes; the emulator's, one hour. */
const TOKEN_SECONDS = 3600;
const USER_DISPLAY_NAME = "Emulator Test User";

const SUFFIXES = [
  "v2.0/.well-known/openid-configuration",
  "discovery/v2.0/keys",
  "oauth2/v2.0/token",
] as const;
type AuthorityEndpoint = (typeof SUFFIXES)[number];

/** Whether `pathname` is one of the authority's (`/{tenant}/...`); the tenant is checked later. */
export function isAuthorityPath(pathname: string): boolean {
  const slash = pathname.indexOf("/", 1);
  return slash > 1 && (SUFFIXES as readonly string[]).includes(pathname.slice(slash + 1));
}

class EntraError {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly code: number,
    readonly description: string,
  ) {}
}

/** Constant-time equality of two strings (their SHA-256, so lengths leak nothing either). */
function same(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given, "utf8").digest();
  const b = createHash("sha256").update(expected, "utf8").digest();
  return timingSafeEqual(a, b);
}

interface ScopeRequest {
  resource: string;
  /** The delegated permissions granted, or `.default` asked for. */
  permissions: string[];
  isDefault: boolean;
  oidc: Set<string>;
}

export interface TenantAuthorityOptions {
  signer: TokenSigner;
  tenantId: string;
  clientId: string;
  servicePrincipalObjectId: string;
  userObjectId: string;
  username: string;
}

export function createTenantAuthority(options: TenantAuthorityOptions): TenantAuthority {
  const { signer, tenantId, clientId } = options;
  // Derived from the signing key: the same for as long as the key is (a state file or a key file
  // keeps both), new with every generated key. Base64url: safe in a shell line and a .env file.
  const clientSecret = signer.derive("entra client secret").subarray(0, 30).toString("base64url");
  const password = `Pw-${signer.derive("entra user password").subarray(0, 18).toString("base64url")}`;
  let authorityHost: string | undefined;
  let issuer: string | undefined;

  const fail = (status: number, error: string, code: number, description: string) =>
    new EntraError(status, error, code, description);
  const missing = (parameter: string) =>
    fail(
      400,
      "invalid_request",
      900144,
      `The request body must contain the following parameter: '${parameter}'.`,
    );

  /** Entra's error body: description with trace, correlation id and timestamp, as the real one. */
  function errorAnswer(e: EntraError, now: number, correlationId: string): AuthorityAnswer {
    const traceId = randomUUID();
    const timestamp = new Date(now)
      .toISOString()
      .replace("T", " ")
      .replace(/\.\d+Z$/, "Z");
    return {
      status: e.status,
      headers: { "Cache-Control": "no-store, no-cache", Pragma: "no-cache" },
      body: {
        error: e.error,
        error_description: `AADSTS${e.code}: ${e.description} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
        error_codes: [e.code],
        timestamp,
        trace_id: traceId,
        correlation_id: correlationId,
        error_uri: `${authorityHost ?? ""}/error?code=${e.code}`,
      },
    };
  }

  function discovery() {
    const base = `${authorityHost}/${tenantId}`;
    return {
      token_endpoint: `${base}/oauth2/v2.0/token`,
      token_endpoint_auth_methods_supported: ["client_secret_post", "client_secret_basic"],
      jwks_uri: `${base}/discovery/v2.0/keys`,
      subject_types_supported: ["pairwise"],
      id_token_signing_alg_values_supported: ["RS256"],
      response_types_supported: ["code", "id_token", "code id_token", "id_token token"],
      scopes_supported: ["openid", "profile", "email", "offline_access"],
      issuer,
      request_uri_parameter_supported: false,
      // MSAL requires the field; the emulator has no interactive sign-in, so nothing answers it.
      authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
      claims_supported: [
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "nbf",
        "name",
        "oid",
        "preferred_username",
        "tid",
        "ver",
      ],
      grant_types_supported: ["client_credentials", "password"],
    };
  }

  function parseScopes(raw: string | null, grant: "client_credentials" | "password"): ScopeRequest {
    if (raw === null || raw.trim() === "") {
      throw missing("scope");
    }
    const all = raw.trim().split(/\s+/);
    const oidc = new Set(
      all.filter((s) => OIDC_SCOPES.has(s.toLowerCase())).map((s) => s.toLowerCase()),
    );
    const rest = all.filter((s) => !OIDC_SCOPES.has(s.toLowerCase()));
    const invalid = (detail: string) =>
      fail(
        400,
        "invalid_scope",
        70011,
        `The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. ${detail}`,
      );
    if (rest.length === 0) {
      throw invalid(`The scope '${raw}' does not name a resource.`);
    }
    const split = rest.map((scope) => {
      const at = scope.lastIndexOf("/");
      if (!/^https:\/\/[^/]+/i.test(scope) || at < "https://".length) {
        throw invalid(`The scope '${scope}' is not valid.`);
      }
      return { resource: scope.slice(0, at), permission: scope.slice(at + 1) };
    });
    const resources = new Set(split.map((s) => s.resource.toLowerCase()));
    if (resources.size > 1) {
      throw fail(
        400,
        "invalid_scope",
        28000,
        `Provided value for the input parameter scope is not valid because it contains more than one resource. Scope ${rest.join(" ")} is not valid.`,
      );
    }
    const asked = split[0]!.resource;
    // `https://communication.azure.com//.default` (the ACS SDK's scope) names the resource
    // `https://communication.azure.com/`: the same resource, and Entra writes that `aud` as asked.
    const known = [...RESOURCES.keys()].find(
      (r) => r.toLowerCase() === asked.toLowerCase().replace(/\/$/, ""),
    );
    const resource = known === undefined ? undefined : asked.endsWith("/") ? `${known}/` : known;
    if (known === undefined || resource === undefined) {
      throw fail(
        400,
        "invalid_resource",
        500011,
        `The resource principal named ${asked} was not found in the tenant named ${tenantId}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.`,
      );
    }
    const isDefault = split.some((s) => s.permission === ".default");
    if (grant === "client_credentials") {
      if (!split.every((s) => s.permission === ".default")) {
        throw fail(
          400,
          "invalid_scope",
          1002012,
          `The provided value for scope ${rest.join(" ")} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`,
        );
      }
      return { resource, permissions: [], isDefault, oidc };
    }
    if (isDefault && split.length > 1) {
      throw invalid(`The scope '${rest.join(" ")}' combines .default with other scopes.`);
    }
    const delegated = RESOURCES.get(known)!;
    if (delegated.length === 0) {
      throw fail(
        400,
        "invalid_grant",
        65001,
        `The user or administrator has not consented to use the application with ID '${clientId}'. Send an interactive authorization request for this user and resource.`,
      );
    }
    const permissions = isDefault
      ? [...delegated]
      : split.map((s) => {
          const found = delegated.find((p) => p.toLowerCase() === s.permission.toLowerCase());
          if (found === undefined) {
            throw invalid(`The scope '${resource}/${s.permission}' is not valid.`);
          }
          return found;
        });
    return { resource, permissions: [...new Set(permissions)], isDefault, oidc };
  }

  async function token(params: URLSearchParams, headers: IncomingHttpHeaders, now: number) {
    // Client authentication: client_secret_post, or client_secret_basic.
    let id = params.get("client_id");
    let secret = params.get("client_secret");
    const basic = /^Basic\s+(\S+)$/i.exec(String(headers.authorization ?? ""));
    if (basic) {
      const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon > 0) {
        id ??= decodeURIComponent(decoded.slice(0, colon));
        secret ??= decodeURIComponent(decoded.slice(colon + 1));
      }
    }
    const grant = params.get("grant_type");
    if (grant === null || grant === "") {
      throw missing("grant_type");
    }
    if (id === null || id === "") {
      throw missing("client_id");
    }
    if (id.toLowerCase() !== clientId) {
      throw fail(
        400,
        "unauthorized_client",
        700016,
        `Application with identifier '${id}' was not found in the directory '${tenantId}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`,
      );
    }
    const badSecret = () =>
      fail(
        401,
        "invalid_client",
        7000215,
        `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`,
      );
    if (secret !== null && !same(secret, clientSecret)) {
      throw badSecret();
    }

    const iat = Math.floor(now / 1000);
    const exp = iat + TOKEN_SECONDS;
    const common = {
      iss: issuer,
      iat,
      nbf: iat,
      exp,
      tid: tenantId,
      uti: base64url.encode(randomUUID()),
      ver: "2.0",
    };

    if (grant === "client_credentials") {
      if (secret === null) {
        throw fail(
          401,
          "invalid_client",
          7000218,
          "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
      }
      const { resource } = parseScopes(params.get("scope"), "client_credentials");
      const accessToken = await signer.sign({
        aud: resource,
        ...common,
        azp: clientId,
        azpacr: "1",
        idtyp: "app",
        oid: options.servicePrincipalObjectId,
        sub: options.servicePrincipalObjectId,
      });
      return {
        token_type: "Bearer",
        expires_in: TOKEN_SECONDS,
        ext_expires_in: TOKEN_SECONDS,
        access_token: accessToken,
      };
    }

    if (grant === "password") {
      // The test application allows public-client flows, so ROPC needs no secret (a wrong one was
      // refused above, as Entra does for a confidential client).
      const username = params.get("username");
      const given = params.get("password");
      if (username === null || username === "") {
        throw missing("username");
      }
      if (given === null || given === "") {
        throw missing("password");
      }
      if (username.toLowerCase() !== options.username) {
        throw fail(
          400,
          "invalid_grant",
          50034,
          `The user account ${username} does not exist in the ${tenantId} directory. To sign into this application, the account must be added to the directory.`,
        );
      }
      if (!same(given, password)) {
        throw fail(
          400,
          "invalid_grant",
          50126,
          "Error validating credentials due to invalid username or password.",
        );
      }
      const scopes = parseScopes(params.get("scope"), "password");
      const oid = options.userObjectId;
      // Pairwise, as Entra's `sub`: stable per user and application.
      const sub = base64url
        .encode(createHash("sha256").update(`${clientId}:${oid}`).digest())
        .slice(0, 43);
      const user = { name: USER_DISPLAY_NAME, oid, preferred_username: options.username, sub };
      const accessToken = await signer.sign({
        aud: scopes.resource,
        ...common,
        azp: clientId,
        azpacr: secret === null ? "0" : "1",
        ...user,
        scp: scopes.permissions.join(" "),
      });
      const granted = scopes.permissions.map((p) => `${scopes.resource}/${p}`);
      const answer: Record<string, unknown> = {
        token_type: "Bearer",
        scope: [...granted, ...[...scopes.oidc].filter((s) => s !== "offline_access")].join(" "),
        expires_in: TOKEN_SECONDS,
        ext_expires_in: TOKEN_SECONDS,
        access_token: accessToken,
      };
      if (scopes.oidc.has("openid")) {
        answer.id_token = await signer.sign({ aud: clientId, ...common, ...user });
      }
      if (params.get("client_info") === "1") {
        answer.client_info = base64url.encode(JSON.stringify({ uid: oid, utid: tenantId }));
      }
      // No refresh token: a client whose token expired signs in again (MSAL does that by itself).
      return answer;
    }

    throw fail(
      400,
      "unsupported_grant_type",
      70003,
      `The app requested an unsupported grant type '${grant}'.`,
    );
  }

  return {
    tenantId,
    clientId,
    clientSecret,
    username: options.username,
    password,
    userObjectId: options.userObjectId,
    get authorityHost() {
      return authorityHost;
    },
    get issuer() {
      return issuer;
    },
    listening(endpoint) {
      authorityHost = new URL(endpoint).origin;
      issuer = `${authorityHost}/${tenantId}/v2.0`;
    },
    async handle(request) {
      const correlation = request.headers["client-request-id"];
      const correlationId =
        typeof correlation === "string" && /^[0-9a-f-]{36}$/i.test(correlation)
          ? correlation
          : randomUUID();
      const slash = request.pathname.indexOf("/", 1);
      const tenant = request.pathname.slice(1, slash);
      const endpoint = request.pathname.slice(slash + 1) as AuthorityEndpoint;
      try {
        if (authorityHost === undefined) {
          throw fail(503, "temporarily_unavailable", 90033, "The authority is starting.");
        }
        if (tenant.toLowerCase() !== tenantId) {
          throw fail(
            400,
            "invalid_tenant",
            90002,
            `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`,
          );
        }
        const expected = endpoint === "oauth2/v2.0/token" ? "POST" : "GET";
        if (request.method !== expected) {
          throw fail(
            400,
            "invalid_request",
            900561,
            `The endpoint only accepts ${expected}, OPTIONS requests. Received a ${request.method} request.`,
          );
        }
        if (endpoint === "v2.0/.well-known/openid-configuration") {
          return { status: 200, body: discovery() };
        }
        if (endpoint === "discovery/v2.0/keys") {
          return { status: 200, body: signer.jwks() };
        }
        const body = await token(
          new URLSearchParams(request.body.toString("utf8")),
          request.headers,
          request.now,
        );
        return {
          status: 200,
          body,
          headers: { "Cache-Control": "no-store, no-cache", Pragma: "no-cache" },
        };
      } catch (error) {
        if (error instanceof EntraError) {
          return errorAnswer(error, request.now, correlationId);
        }
        throw error;
      }
    },
    async verify(token, now) {
      if (!jwtPayload(token)) {
        return { failure: "malformed-token" };
      }
      const claims: Record<string, unknown> | undefined = await signer.verify(token);
      if (!claims) {
        return { failure: "bad-signature" };
      }
      if (claims.tid !== tenantId) {
        return { failure: "wrong-tenant" };
      }
      if (issuer === undefined || claims.iss !== issuer) {
        return { failure: "wrong-issuer" };
      }
      if (typeof claims.nbf === "number" && claims.nbf * 1000 > now) {
        return { failure: "not-yet-valid" };
      }
      if (typeof claims.exp !== "number" || claims.exp * 1000 <= now) {
        return { failure: "expired" };
      }
      return { claims };
    },
  };
}
