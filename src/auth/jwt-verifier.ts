import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from "jose";
import { AuthError, callerKey, type Caller } from "./caller.js";

export interface JwtVerifierOptions {
  jwksUrl: string;
  issuer: string;
  audience: string;
  adminRole: string;
  /** Tolerated clock difference for exp/nbf/iat. @default 30 */
  clockToleranceSeconds?: number;
  /** JWKS fetch timeout. @default 5000 */
  timeoutMs?: number;
  /** Least time between two JWKS fetches caused by unknown `kid`s. @default 30000 */
  cooldownMs?: number;
}

export interface JwtVerifier {
  /** The caller behind an `Authorization` header; throws AuthError for anything not acceptable. */
  verify(authorization: string | undefined): Promise<Caller>;
}

/**
 * Asymmetric algorithms only: `none` and HS* are refused outright, which closes the classic
 * confusion attack (an HS256 token "signed" with the issuer's public key as the HMAC secret).
 */
const ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
];
const MAX_HEADER_LENGTH = 8192;

/**
 * Roles from the `roles` claim: an array of strings (Entra ID app roles), or one space-separated
 * string (some issuers). Anything else counts as no roles.
 */
function rolesOf(payload: JWTPayload): string[] {
  const roles = payload.roles;
  if (Array.isArray(roles)) {
    return roles.filter((role): role is string => typeof role === "string");
  }
  return typeof roles === "string" ? roles.split(" ").filter(Boolean) : [];
}

export function createJwtVerifier(options: JwtVerifierOptions): JwtVerifier {
  // Keys are cached; an unknown kid triggers a refetch (at most once per cooldown), which is how
  // a key rotation at the issuer is picked up without a restart.
  const keys = createRemoteJWKSet(new URL(options.jwksUrl), {
    timeoutDuration: options.timeoutMs ?? 5000,
    cooldownDuration: options.cooldownMs ?? 30_000,
    cacheMaxAge: 10 * 60_000,
  });

  return {
    async verify(authorization) {
      if (authorization === undefined || authorization === "") {
        throw new AuthError("missing", "Sign in: send an Authorization: Bearer token.");
      }
      if (authorization.length > MAX_HEADER_LENGTH) {
        throw new AuthError("malformed", "The Authorization header is too long.");
      }
      const match = /^Bearer +([A-Za-z0-9._~+/-]+=*)$/i.exec(authorization.trim());
      if (!match) {
        throw new AuthError("malformed", "The Authorization header must be 'Bearer <token>'.");
      }
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(match[1]!, keys, {
          issuer: options.issuer,
          audience: options.audience,
          algorithms: ALGORITHMS,
          clockTolerance: options.clockToleranceSeconds ?? 30,
          requiredClaims: ["sub", "exp"],
        }));
      } catch (error) {
        if (error instanceof errors.JWTExpired) {
          throw new AuthError("expired", "The bearer token has expired.");
        }
        throw new AuthError("invalid", "The bearer token is not valid for this service.");
      }
      const subject = payload.sub!;
      const roles = rolesOf(payload);
      return {
        subject,
        issuer: payload.iss,
        roles,
        isAdmin: roles.includes(options.adminRole),
        key: callerKey(payload.iss, subject),
      };
    },
  };
}
