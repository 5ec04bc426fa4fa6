import { describe, expect, it } from "vitest";
import { createKnownMappings } from "../../src/identity/known-mappings.js";

describe("known mappings (this process's memory of confirmed mappings)", () => {
  it("answers what it was told until told to forget", () => {
    const known = createKnownMappings();
    expect(known.get("ann")).toBeUndefined();
    known.remember("ann", "8:acs:r_1");
    expect(known.get("ann")).toBe("8:acs:r_1");
    known.forget("ann");
    expect(known.get("ann")).toBeUndefined();
  });

  it("keeps nothing past its age, counted from when it was told, however often it is read", () => {
    const clock = { now: 1000 };
    const known = createKnownMappings({ maxAgeMs: 60_000, now: () => clock.now });
    known.remember("ann", "8:acs:r_1");
    for (; clock.now < 60_999; clock.now += 10_000) {
      expect(known.get("ann")).toBe("8:acs:r_1");
    }
    clock.now = 61_001;
    expect(known.get("ann")).toBeUndefined();
    expect(known.size).toBe(0);
  });

  it("holds at most its bound, dropping the least recently used", () => {
    const known = createKnownMappings({ maxEntries: 3 });
    for (const who of ["a", "b", "c"]) {
      known.remember(who, `8:acs:r_${who}`);
    }
    known.get("a");
    known.remember("d", "8:acs:r_d");
    expect(known.size).toBe(3);
    expect(known.get("b")).toBeUndefined();
    expect(["a", "c", "d"].map((who) => known.get(who))).toEqual([
      "8:acs:r_a",
      "8:acs:r_c",
      "8:acs:r_d",
    ]);
  });

  it("remembers nothing with a bound of 0", () => {
    const known = createKnownMappings({ maxEntries: 0 });
    known.remember("ann", "8:acs:r_1");
    expect(known.get("ann")).toBeUndefined();
  });
});
