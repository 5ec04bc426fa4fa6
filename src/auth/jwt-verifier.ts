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
/** Real bearer tokens are 1-3 KB; a larger header is refused before any parsing or crypto. */
const MAX_HEADER_LENGTH = 8192;
/** `sub` becomes a key part and is shown by `me`; real ones are short (Entra ID: 43 characters). */
const MAX_SUBJECT_LENGTH = 1024;
/** RFC 6750 `b64token`; a JWT only ever uses the base64url alphabet and dots. */
const BEARER = /^Bearer[ ]+([A-Za-z0-9._~+/-]+=*)$/i;

/**
 * Roles from the `roles` claim: an array of strings (Entra ID app roles), or one space-separated
 * string (the OAuth `scope` style some issuers use for custom claims). Anything else, including
 * non-string array members, counts as no role: a malformed claim never grants admin.
 */
function rolesOf(payload: JWTPayload): string[] {
  const roles = payload.roles;
  if (Array.isArray(roles)) {
    return roles.filter((role): role is string => typeof role === "string");
  }
  return typeof roles === "string" ? roles.split(/\s+/).filter(Boolean) : [];
}

/**
 * Failures of the key fetch rather than of the token: a timeout, a refused connection (fetch's
 * TypeError), a non-200 answer or an unparseable key set (jose's generic JOSEError), a key set
 * of the wrong shape. The token may be fine; the caller should retry, not sign in again.
 */
function isKeySetUnavailable(error: unknown): boolean {
  return (
    error instanceof errors.JWKSTimeout ||
    error instanceof errors.JWKSInvalid ||
    error instanceof TypeError ||
    (error instanceof errors.JOSEError && error.code === "ERR_JOSE_GENERIC")
  );
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
      // The scheme is case-insensitive (RFC 9110 section 11.1).
      const match = BEARER.exec(authorization.trim());
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
        // jose's messages are safe (they never quote the token), but they describe why a forgery
        // failed; callers get one of four fixed sentences instead.
        if (error instanceof errors.JWTExpired) {
          throw new AuthError("expired", "The bearer token has expired.");
        }
        if (isKeySetUnavailable(error)) {
          throw new AuthError(
            "unavailable",
            "The issuer's signing keys could not be fetched to check the bearer token. Try again.",
          );
        }
        throw new AuthError("invalid", "The bearer token is not valid for this service.");
      }
      // jose checks that `sub` is present, not that it is a usable string.
      const subject = payload.sub as unknown;
      if (typeof subject !== "string" || subject === "" || subject.length > MAX_SUBJECT_LENGTH) {
        throw new AuthError("invalid", "The bearer token is not valid for this service.");
      }
      const roles = rolesOf(payload);
      // Entra ID's object id: what a Teams token exchange must match (the rights table's rule).
      const objectId =
        typeof payload.oid === "string" && payload.oid !== "" ? payload.oid : undefined;
      return {
        subject,
        objectId,
        // jwtVerify checked `iss` equals the configured issuer exactly.
        issuer: options.issuer,
        roles,
        isAdmin: roles.includes(options.adminRole),
        key: callerKey(options.issuer, subject),
      };
    },
  };
}
