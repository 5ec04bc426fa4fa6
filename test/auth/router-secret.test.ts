import { describe, expect, it } from "vitest";
import { ROUTER_SECRET_HEADER, routerSecretMatches } from "../../src/auth/router-secret.js";

const SECRET = "router-secret-0123456789";

describe("the router secret check", () => {
  it("accepts exactly the secret", () => {
    expect(routerSecretMatches(SECRET, SECRET)).toBe(true);
    expect(ROUTER_SECRET_HEADER).toBe("router-authorization");
  });

  it("refuses other values, prefixes, extensions, case changes and padding", () => {
    for (const presented of [
      "",
      "router-secret",
      `${SECRET}x`,
      SECRET.toUpperCase(),
      ` ${SECRET}`,
      `Bearer ${SECRET}`,
      "x".repeat(10_000),
    ]) {
      expect(routerSecretMatches(presented, SECRET), presented.slice(0, 20)).toBe(false);
    }
  });

  it("never throws on a length other than the secret's (timingSafeEqual alone would)", () => {
    for (const length of [0, 1, SECRET.length - 1, SECRET.length + 1, 64, 1_000_000]) {
      const presented = "a".repeat(length);
      expect(() => routerSecretMatches(presented, SECRET)).not.toThrow();
      expect(routerSecretMatches(presented, SECRET)).toBe(false);
    }
    const long = "s".repeat(4096);
    expect(routerSecretMatches(long, long)).toBe(true);
    expect(routerSecretMatches(long.slice(1), long)).toBe(false);
  });

  it("refuses an absent header and a header sent twice", () => {
    expect(routerSecretMatches(undefined, SECRET)).toBe(false);
    expect(routerSecretMatches([SECRET, SECRET], SECRET)).toBe(false);
  });

  it("compares non-ASCII secrets by their UTF-8 bytes", () => {
    expect(routerSecretMatches("sécret-ÿ-0123456789", "sécret-ÿ-0123456789")).toBe(true);
    expect(routerSecretMatches("secret-y-0123456789", "sécret-ÿ-0123456789")).toBe(false);
  });
});
