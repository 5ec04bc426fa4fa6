import { describe, expect, it } from "vitest";
import { tokenCacheKeying } from "../../src/app/token-cache-keying.js";
import { namespaceFingerprint } from "../../src/cache/index.js";
import { loadConfig } from "../../src/config.js";

const ENDPOINT = "https://contoso.communication.azure.com/";
const ACCESS_KEY = Buffer.alloc(32, 1).toString("base64");
const CACHE_KEY = Buffer.alloc(32, 2).toString("base64");

describe("what the token cache is keyed with", () => {
  it("an access key: that key, so the namespace follows it", () => {
    const config = loadConfig({ LOG_LEVEL: "silent" });
    const keying = tokenCacheKeying(config, { endpoint: ENDPOINT, accessKey: ACCESS_KEY });
    expect(keying).toEqual({ endpoint: ENDPOINT, accessKey: ACCESS_KEY });
  });

  it("Entra ID with TOKEN_CACHE_ENCRYPTION_KEY: that key, never the endpoint", () => {
    const config = loadConfig({ LOG_LEVEL: "silent", TOKEN_CACHE_ENCRYPTION_KEY: CACHE_KEY });
    const keying = tokenCacheKeying(config, { endpoint: ENDPOINT, accessKey: undefined });
    expect(keying).toEqual({ endpoint: ENDPOINT, accessKey: CACHE_KEY });
    // The namespace of a deployment that already ran with this key is unchanged.
    expect(namespaceFingerprint(keying.endpoint, keying.accessKey)).toBe(
      namespaceFingerprint(ENDPOINT, CACHE_KEY),
    );
  });

  it("Entra ID with the in-process cache and no key: no key material (the memory cache reads none)", () => {
    const config = loadConfig({ LOG_LEVEL: "silent" });
    expect(config.redis.mode).toBe("memory");
    const keying = tokenCacheKeying(config, { endpoint: ENDPOINT, accessKey: undefined });
    expect(keying).toEqual({ endpoint: ENDPOINT, accessKey: "" });
  });
});
