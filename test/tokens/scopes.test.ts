import { describe, expect, it } from "vitest";
import { isAcsUserId, isValidLifetime, normalizeScopes } from "../../src/tokens/scopes.js";

describe("scope and input rules", () => {
  it("normalises scopes so reordered and repeated lists are one entry", () => {
    expect(normalizeScopes(["voip", "chat"])).toEqual(["chat", "voip"]);
    expect(normalizeScopes(["chat", "voip", "chat"])).toEqual(["chat", "voip"]);
    expect(normalizeScopes(["voip.join", "chat.join.limited", "chat.join"])).toEqual([
      "chat.join",
      "chat.join.limited",
      "voip.join",
    ]);
  });

  it("accepts lifetimes from 60 to 1440 whole minutes only", () => {
    expect([60, 61, 1440].every(isValidLifetime)).toBe(true);
    expect([59, 1441, 60.5, Number.NaN].some(isValidLifetime)).toBe(false);
  });

  it("recognises ACS communication user ids and nothing else", () => {
    expect(
      isAcsUserId(
        "8:acs:2dee53b4-368b-45b4-ab52-8493fb117652_00000005-14a2-493b-8a72-5a3a0d000081",
      ),
    ).toBe(true);
    for (const bad of [
      "",
      "8:acs:",
      "user-1",
      "8:teamsvisitor:abc",
      "8:acs:not-a-guid_x",
      `8:acs:2dee53b4-368b-45b4-ab52-8493fb117652_${"x".repeat(200)}`,
    ]) {
      expect(isAcsUserId(bad)).toBe(false);
    }
  });
});
