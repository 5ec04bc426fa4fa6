import { describe, expect, it } from "vitest";
import { createRateLimiter } from "../../src/auth/rate-limiter.js";
import { createKeyScheme } from "../../src/cache/keys.js";
import {
  escapeKeyPart,
  hashTag,
  mappingKeyPrefix,
  rateLimitKeyPrefix,
  tokenCacheKeyPrefix,
  type RedisClient,
} from "../../src/redis/index.js";

describe("one escaping rule for user-controlled key parts", () => {
  it("percent-encodes only braces and the percent sign, so ordinary ids keep their key names", () => {
    const acsId = "8:acs:2dee53b4-368b-45b4-ab52-8493fb117652_00000005-14a2-493b-8a72-5a3a0d000081";
    expect(escapeKeyPart(acsId)).toBe(acsId);
    expect(escapeKeyPart("a}b{c%")).toBe("a%7Db%7Bc%25");
    expect(hashTag("x}y")).toBe("{x%7Dy}");
  });

  it("is one-to-one: values that differ never share a tag, even ones that look pre-escaped", () => {
    const values = ["%7D", "}", "%257D", "{", "%7B", "%", "%25", "a}", "a%7D"];
    expect(new Set(values.map(hashTag)).size).toBe(values.length);
  });

  it("leaves exactly one { and one } in a tag, whatever the value holds", () => {
    for (const value of ["}}}", "{{", "}{", "a}{b", "{x}"]) {
      const tag = hashTag(value);
      expect(tag.match(/[{}]/g)).toEqual(["{", "}"]);
    }
  });

  it("names each store's keys under REDIS_KEY_PREFIX and refuses a brace in a prefix", () => {
    expect(tokenCacheKeyPrefix("acsgw:", "0123456789ab")).toBe("acsgw:tc1:0123456789ab:");
    expect(rateLimitKeyPrefix("acsgw:")).toBe("acsgw:rl:");
    expect(mappingKeyPrefix("acsgw:", "feedbeef0000")).toBe("acsgw:map:feedbeef0000:");
    for (const make of [
      () => tokenCacheKeyPrefix("a{", "f"),
      () => rateLimitKeyPrefix("}"),
      () => mappingKeyPrefix("x{y}", "f"),
    ]) {
      expect(make).toThrow("must not contain");
    }
  });

  it("is the rule of the token cache's keys and of the rate limiter's counters", async () => {
    const odd = "caller}{%";
    expect(createKeyScheme("p:").epoch(odd)).toBe(`p:${hashTag(odd)}:e`);

    const sent: string[] = [];
    const fake = {
      status: "ready",
      on() {},
      off() {},
      async evalsha(_sha: string, _n: number, key: string) {
        sent.push(key);
        return 1;
      },
    } as unknown as RedisClient;
    const limiter = createRateLimiter({
      limit: 5,
      windowSeconds: 60,
      redis: fake,
      keyPrefix: "rl:",
    });
    await limiter.consume(odd);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.startsWith(`rl:${hashTag(odd)}:`)).toBe(true);
  });
});
