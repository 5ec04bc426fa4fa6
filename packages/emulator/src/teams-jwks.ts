import { createPublicKey, verify, type JsonWebKey, type KeyObject } from "node:crypto";
import type { Logger } from "./logger.js";
import { isGuid, jwtHeader, jwtPayload } from "./rules.js";

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

export function createTeamsTokenVerifier(options: {
  jwksUrl: string;
  fetch?: typeof fetch;
  now?: () => number;
  logger?: Logger;
}): TeamsTokenVerifier {
  const doFetch = options.fetch ?? fetch;
  const now = options.now ?? Date.now;
  let keys = new Map<string, KeyObject>();
  let fetchedAt = -Infinity;
  let inFlight: Promise<void> | undefined;

  const refresh = () => {
    inFlight ??= (async () => {
      try {
        const response = await doFetch(options.jwksUrl, { signal: AbortSignal.timeout(5_000) });
        if (!response.ok) {
          throw new Error(`status ${response.status}`);
        }
        const body = (await response.json()) as { keys?: unknown };
        const next = new Map<string, KeyObject>();
        for (const jwk of Array.isArray(body.keys) ? body.keys : []) {
          const { kid, kty } = (jwk ?? {}) as { kid?: unknown; kty?: unknown };
          if (typeof kid === "string" && kty === "RSA") {
            try {
              next.set(kid, createPublicKey({ key: jwk as JsonWebKey, format: "jwk" }));
            } catch {
              // A key node cannot import cannot verify anything: skipped.
            }
          }
        }
        keys = next;
      } catch (error) {
        // An unreachable JWKS verifies nothing: every exchange answers 401 until it is back.
        options.logger?.warn(
          { err: error instanceof Error ? error.message : String(error) },
          "the emulator could not read the Teams JWKS",
        );
      } finally {
        fetchedAt = now();
        inFlight = undefined;
      }
    })();
    return inFlight;
  };

  return {
    async verify(token) {
      const header = jwtHeader(token);
      const payload = jwtPayload(token);
      if (!header || !payload || header.alg !== "RS256" || typeof header.kid !== "string") {
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
      if (
        now() - fetchedAt > CACHE_MS ||
        (!keys.has(header.kid) && now() - fetchedAt > REFETCH_MS)
      ) {
        await refresh();
      }
      const key = keys.get(header.kid);
      if (!key) {
        return false;
      }
      const [h, p, s] = token.split(".");
      return verify("sha256", Buffer.from(`${h}.${p}`), key, Buffer.from(s!, "base64url"));
    },
  };
}
