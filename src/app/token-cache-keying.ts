import type { AcsConnection, Config } from "../config.js";
import type { AcsResource } from "./acs-resource.js";

/**
 * What the token cache is keyed with (`TokenCacheDeps.acs`, cache/index.ts): the Redis cache names
 * its namespace after the endpoint with an HMAC keyed by `accessKey`, and without
 * TOKEN_CACHE_ENCRYPTION_KEY derives its encryption key from `accessKey` too.
 *
 * - With an access key (connection string, embedded emulator): that key, so rotating it moves the
 *   cache to a new namespace (the rotation revoked every token at ACS anyway).
 * - With Entra ID there is no access key: TOKEN_CACHE_ENCRYPTION_KEY (base64), which config.ts
 *   requires with Redis, keys the namespace and is the encryption key itself.
 * - Entra ID with the in-process cache and no such key: there is no key material, and none is
 *   needed: the memory cache names no namespace and encrypts nothing, so it never reads the
 *   (empty) key it is given.
 */
export function tokenCacheKeying(
  config: Readonly<Config>,
  resource: Pick<AcsResource, "endpoint" | "accessKey">,
): AcsConnection {
  const keyMaterial = resource.accessKey ?? config.tokenCacheEncryptionKey?.toString("base64");
  if (keyMaterial !== undefined) {
    return { endpoint: resource.endpoint, accessKey: keyMaterial };
  }
  if (config.redis.mode !== "memory") {
    // config.ts refuses this combination; reaching here is a bug, not a setting to explain.
    throw new Error("the Redis token cache needs an access key or TOKEN_CACHE_ENCRYPTION_KEY");
  }
  return { endpoint: resource.endpoint, accessKey: "" };
}
