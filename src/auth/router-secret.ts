import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Constant-time check of the `router-authorization` header. Both sides are hashed first, so the
 * comparison takes the same time whatever the presented value's length or content.
 */
export function routerSecretMatches(presented: string, secret: string): boolean {
  const a = createHash("sha256").update(presented).digest();
  const b = createHash("sha256").update(secret).digest();
  return timingSafeEqual(a, b);
}
