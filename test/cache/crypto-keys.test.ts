import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createBreaker } from "../../src/cache/breaker.js";
import {
  deriveCacheKey,
  namespaceFingerprint,
  open,
  openToken,
  seal,
  sealToken,
} from "../../src/cache/crypto.js";
import { cacheKeyPrefix, createKeyScheme, entrySuffix } from "../../src/cache/keys.js";
import { redactRedisUrl } from "../../src/redis/index.js";
import { normalizeScopes } from "../../src/tokens/scopes.js";

const ACCESS_KEY = randomBytes(64).toString("base64");
const USER = "8:acs:2dee53b4-368b-45b4-ab52-8493fb117652_00000005-14a2-493b-8a72-5a3a0d000081";

describe("cache encryption", () => {
  const key = deriveCacheKey(ACCESS_KEY);
  const token = { token: "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2ln", expiresOn: 1_800_000_000_123 };

  it("round-trips a token and never leaves its text in the sealed bytes", () => {
    const sealed = sealToken(key, "k1", token);
    expect(openToken(key, "k1", sealed)).toEqual(token);
    expect(sealed.toString("latin1")).not.toContain("eyJ");
    expect(sealed.toString("base64")).not.toContain(token.token);
  });

  it("uses a fresh IV for every write, so equal tokens seal differently", () => {
    expect(sealToken(key, "k1", token).equals(sealToken(key, "k1", token))).toBe(false);
  });

  it("refuses a value replayed under another key name", () => {
    expect(openToken(key, "k2", sealToken(key, "k1", token))).toBeUndefined();
  });

  it("refuses a tampered value, a truncated one and one sealed with another key", () => {
    const sealed = seal(key, "a", Buffer.from("hello"));
    const flipped = Buffer.from(sealed);
    flipped[14] = flipped[14]! ^ 1;
    expect(open(key, "a", flipped)).toBeUndefined();
    expect(open(key, "a", sealed.subarray(0, 20))).toBeUndefined();
    expect(open(deriveCacheKey(randomBytes(64).toString("base64")), "a", sealed)).toBeUndefined();
    expect(open(key, "a", sealed)?.toString()).toBe("hello");
  });

  it("derives a stable 32-byte key from the access key, different for another key", () => {
    expect(deriveCacheKey(ACCESS_KEY)).toHaveLength(32);
    expect(deriveCacheKey(ACCESS_KEY).equals(deriveCacheKey(ACCESS_KEY))).toBe(true);
    expect(
      deriveCacheKey(ACCESS_KEY).equals(deriveCacheKey(randomBytes(64).toString("base64"))),
    ).toBe(false);
  });

  it("fingerprints the namespace in 12 hex characters that change with the key or the endpoint", () => {
    const fp = namespaceFingerprint("https://a.communication.azure.com/", ACCESS_KEY);
    expect(fp).toMatch(/^[0-9a-f]{12}$/);
    expect(namespaceFingerprint("https://a.communication.azure.com", ACCESS_KEY)).toBe(fp);
    expect(namespaceFingerprint("https://b.communication.azure.com/", ACCESS_KEY)).not.toBe(fp);
    expect(
      namespaceFingerprint(
        "https://a.communication.azure.com/",
        randomBytes(64).toString("base64"),
      ),
    ).not.toBe(fp);
    expect(ACCESS_KEY).not.toContain(fp);
  });
});

describe("cache key scheme", () => {
  const keys = createKeyScheme(cacheKeyPrefix("acsgw:", "0123456789ab"));

  it("gives reordered and repeated scopes the same entry, and lifetimes their own", () => {
    const a = entrySuffix({
      userId: USER,
      scopes: normalizeScopes(["voip", "chat"]),
      expiresInMinutes: 60,
    });
    const b = entrySuffix({
      userId: USER,
      scopes: normalizeScopes(["chat", "voip", "chat"]),
      expiresInMinutes: 60,
    });
    expect(a).toBe(b);
    expect(a).toBe("chat,voip:60");
    expect(
      entrySuffix({ userId: USER, scopes: ["chat", "voip"], expiresInMinutes: undefined }),
    ).toBe("chat,voip:d");
    expect(entrySuffix({ userId: USER, scopes: ["chat", "voip"], expiresInMinutes: 61 })).not.toBe(
      a,
    );
  });

  it("puts every key of one user under the {userId} hash tag, after the versioned, fingerprinted prefix", () => {
    const all = [
      keys.epoch(USER),
      keys.tombstone(USER),
      keys.index(USER),
      keys.entry(USER, "chat:60"),
      keys.lock(USER, "chat:60"),
    ];
    for (const k of all) {
      expect(k.startsWith(`acsgw:tc1:0123456789ab:{${USER}}:`)).toBe(true);
    }
    expect(new Set(all).size).toBe(all.length);
  });

  it("escapes braces inside a user id so the hash tag always covers the whole id", () => {
    const odd = keys.epoch("a}b{c%");
    expect(odd).toBe("acsgw:tc1:0123456789ab:{a%7Db%7Bc%25}:e");
    expect(() => createKeyScheme("bad{prefix}:")).toThrow();
  });
});

describe("cache helpers", () => {
  it("never shows a Redis password in a logged URL", () => {
    expect(redactRedisUrl("redis://user:s3cret@host:6380/1")).toBe("redis://user:***@host:6380/1");
    expect(redactRedisUrl("redis://host:6380")).toBe("redis://host:6380");
    // ioredis takes options from the query too, a password among them.
    expect(redactRedisUrl("redis://host:6380/0?password=s3cret&family=6")).toBe(
      "redis://host:6380/0?password=***&family=***",
    );
  });

  it("opens the breaker after the threshold, lets a probe through after the pause, and closes on success", () => {
    let t = 0;
    const breaker = createBreaker({ failureThreshold: 3, openMs: 100, now: () => t });
    expect(breaker.failure()).toBe(false);
    expect(breaker.failure()).toBe(false);
    expect(breaker.failure()).toBe(true);
    expect(breaker.canTry()).toBe(false);
    t = 100;
    expect(breaker.canTry()).toBe(true);
    breaker.failure();
    expect(breaker.canTry()).toBe(false);
    t = 250;
    breaker.success();
    expect(breaker.canTry()).toBe(true);
    expect(breaker.isOpen()).toBe(false);
  });

  it("gives the probe to one caller per pause: the others are refused until it answers or the next pause ends", () => {
    let t = 0;
    const breaker = createBreaker({ failureThreshold: 1, openMs: 100, now: () => t });
    expect(breaker.claim()).toBe(true);
    breaker.failure();
    expect(breaker.claim()).toBe(false);
    t = 100;
    expect(breaker.canTry()).toBe(true);
    expect([breaker.claim(), breaker.claim(), breaker.claim()]).toEqual([true, false, false]);
    t = 199;
    expect(breaker.claim()).toBe(false);
    t = 200;
    expect(breaker.claim()).toBe(true);
    breaker.success();
    expect([breaker.claim(), breaker.claim()]).toEqual([true, true]);
  });
});
