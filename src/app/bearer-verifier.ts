import { createJwtVerifier, type JwtVerifier } from "../auth/jwt-verifier.js";
import type { Config } from "../config.js";
import type { Logger } from "../logger.js";

/**
 * Claims a user can often set or change at their identity provider (Microsoft's guidance: never
 * authorize on `email`, `preferred_username` or `upn`). As the external id, whoever claims a value
 * gets the identity an admin provisioned under it.
 */
const CHANGEABLE_CLAIMS = new Set([
  "email",
  "preferred_username",
  "upn",
  "unique_name",
  "name",
  "nickname",
]);

/**
 * How bearer tokens are verified, as AUTH_MODE says: `jwt` against the configured issuer's JWKS;
 * `none` verifies nothing (every caller is the admin `anonymous`), which is said at start in a
 * warning, since it must never reach an exposed deployment (production refuses it in config.ts).
 */
export function createBearerVerifier(
  config: Readonly<Config>,
  logger: Logger,
): JwtVerifier | undefined {
  if (config.auth.mode === "jwt") {
    const claim = config.directory.externalIdClaim;
    if (CHANGEABLE_CLAIMS.has(claim)) {
      logger.warn(
        { claim },
        `AUTH_EXTERNAL_ID_CLAIM=${claim}: a claim users may be able to set or change at their identity provider. Whoever presents a value gets the identity provisioned under it; prefer sub or oid, or a claim only your identity provider sets.`,
      );
    }
    return createJwtVerifier({
      jwksUrl: config.auth.jwksUrl,
      issuer: config.auth.issuer,
      audience: config.auth.audience,
      adminRole: config.adminRole,
      externalIdClaim: config.directory.externalIdClaim,
    });
  }
  logger.warn(
    "AUTH_MODE=none: every caller is the admin 'anonymous'. For development only; set AUTH_MODE=jwt before exposing the gateway.",
  );
  return undefined;
}
