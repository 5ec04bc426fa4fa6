import { describe, expect, it } from "vitest";
import { createSingleflight } from "../../src/cache/singleflight.js";
import { signal } from "./upstream.js";

describe("the singleflight (keyed promise map)", () => {
  it("runs one call per key while it is in flight and hands every caller its result", async () => {
    const flights = createSingleflight<string>();
    const { promise: gate, fire: open } = signal();
    let calls = 0;
    const start = async () => {
      const n = ++calls;
      await gate;
      return `result-${n}`;
    };
    const together = [flights.run("k", start), flights.run("k", start), flights.run("k", start)];
    const other = flights.run("other", start);
    expect(flights.size()).toBe(2);
    open();
    expect(await Promise.all(together)).toEqual(["result-1", "result-1", "result-1"]);
    expect(await other).toBe("result-2");
    expect(calls).toBe(2);
  });

  it("frees the key once the call settles, also on failure, so the next caller starts anew", async () => {
    const flights = createSingleflight<number>();
    await expect(flights.run("k", () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(flights.size()).toBe(0);
    expect(await flights.run("k", async () => 7)).toBe(7);
    // A start that throws synchronously rejects like one that rejects.
    await expect(
      flights.run("k", () => {
        throw new Error("sync");
      }),
    ).rejects.toThrow("sync");
    expect(flights.size()).toBe(0);
  });

  it("after clear, new callers start their own call and the old one does not free the new key", async () => {
    const flights = createSingleflight<string>();
    const first = signal<string>();
    const second = signal<string>();
    const old = flights.run("k", () => first.promise);
    flights.clear();
    const fresh = flights.run("k", () => second.promise);
    first.fire("old");
    expect(await old).toBe("old");
    // The old flight settled; the new one must still be the one joined.
    const joined = flights.run("k", () => Promise.resolve("third"));
    second.fire("new");
    expect(await fresh).toBe("new");
    expect(await joined).toBe("new");
  });

  it("forgets only the keys with a prefix: later callers of those start their own call", async () => {
    const flights = createSingleflight<string>();
    const ann = signal<string>();
    const bob = signal<string>();
    const annFirst = flights.run("ann\u0000chat", () => ann.promise);
    const bobFirst = flights.run("bob\u0000chat", () => bob.promise);
    flights.forget("ann\u0000");
    const annAgain = flights.run("ann\u0000chat", () => Promise.resolve("ann's own"));
    const bobAgain = flights.run("bob\u0000chat", () => Promise.resolve("bob's own"));
    ann.fire("ann's first");
    bob.fire("bob's first");
    expect(await annFirst).toBe("ann's first");
    expect(await annAgain).toBe("ann's own");
    expect(await bobAgain).toBe(await bobFirst);
  });
});
