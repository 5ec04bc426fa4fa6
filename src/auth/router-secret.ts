import { createHash, timingSafeEqual } from "node:crypto";

/** The header a router sends the shared secret in (Apollo's subgraph guidance). */
export const ROUTER_SECRET_HEADER = "router-authorization";

const digest = (value: string) => createHash("sha256").update(value, "utf8").digest();

/**
 * Constant-time check of the `router-authorization` header. Both sides are hashed first, so
 * `timingSafeEqual` always compares 32 bytes: neither the secret's length nor how much of a guess
 * matched shows in the time taken. Takes the raw header value as Node gives it: absent, or sent
 * more than once (an array), is a mismatch rather than a guess at which copy counts.
 */
export function routerSecretMatches(
  presented: string | readonly string[] | undefined,
  secret: string,
): boolean {
  if (typeof presented !== "string") {
    return false;
  }
  return timingSafeEqual(digest(presented), digest(secret));
}
