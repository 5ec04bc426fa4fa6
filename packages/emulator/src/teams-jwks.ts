import {
  compactVerify,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  type CompactVerifyGetKey,
  type CryptoKey,
} from "jose";
import type { Logger } from "./logger.js";
import { isGuid, jwtPayload } from "./rules.js";

/**
 * `ACS_EMULATOR_TEAMS_JWKS_URL`: the Teams exchange checks the Entra token's RS256 signature against
 * this JWKS and its issuer against the token's own tenant (`tid`), as Entra ID issues them.
 */
export interface TeamsTokenVerifier {
  /** True when the signature verifies against the JWKS and the issuer is the tenant's. */
  verify(token: string): Promise<boolean>;
}

/** Keys are cached this long; an unknown `kid` refetches at most once per REFETCH_MS. */
const CACHE_MS = 10 * 60_000;
const REFETCH_MS = 30_000;
const FETCH_TIMEOUT_MS = 5_000;

export function createTeamsTokenVerifier(options: {
  jwksUrl: string;
  logger?: Logger;
}): TeamsTokenVerifier {
  const remote = createRemoteJWKSet(new URL(options.jwksUrl), {
    cacheMaxAge: CACHE_MS,
    cooldownDuration: REFETCH_MS,
    timeoutDuration: FETCH_TIMEOUT_MS,
  });
  const keys: CompactVerifyGetKey = async (header, token) => {
    try {
      return await remote(header, token);
    } catch (error) {
      if (!remote.fresh) {
        // An unreachable JWKS verifies nothing: every exchange answers 401 until it is back.
        options.logger?.warn(
          { err: error instanceof Error ? error.message : String(error) },
          "the emulator could not read the Teams JWKS",
        );
      }
      throw error;
    }
  };

  /** The signature, checked against the JWKS key of the token's `kid`. */
  async function signatureVerifies(token: string): Promise<boolean> {
    try {
      await compactVerify(token, keys, { algorithms: ["RS256"] });
      return true;
    } catch (error) {
      if (!(error instanceof errors.JWKSMultipleMatchingKeys)) {
        return false;
      }
      // Several keys share the kid: the last of them that imports is the kid's key, as a later
      // key of a kid has always replaced an earlier one here.
      let last: CryptoKey | undefined;
      for await (const key of error) {
        last = key;
      }
      if (!last) {
        return false;
      }
      try {
        await compactVerify(token, last, { algorithms: ["RS256"] });
        return true;
      } catch {
        return false;
      }
    }
  }

  return {
    async verify(token) {
      let header: ReturnType<typeof decodeProtectedHeader>;
      try {
        header = decodeProtectedHeader(token);
      } catch {
        return false;
      }
      const payload = jwtPayload(token);
      if (!payload || header.alg !== "RS256" || typeof header.kid !== "string") {
        return false;
      }
      const tid = payload.tid;
      if (typeof tid !== "string" || !isGuid(tid)) {
        return false;
      }
      const issuers = [
        `https://sts.windows.net/${tid}/`,
        `https://login.microsoftonline.com/${tid}/v2.0`,
      ];
      if (!issuers.includes(String(payload.iss))) {
        return false;
      }
      return signatureVerifies(token);
    },
  };
}
