import { createJwtVerifier, type JwtVerifier } from "../auth/jwt-verifier.js";
import type { Config } from "../config.js";
import type { Logger } from "../logger.js";

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
