import { afterEach, describe, expect, it, vi } from "vitest";
import {
  createBackgroundRetries,
  type RetriedWork,
  type RetryEnding,
} from "../src/background-retries.js";

/** Work that fails while `down.value`, recording its tries and how it ended. */
function work(down: { value: boolean }) {
  const log = { tries: 0, waited: 0, ended: [] as [RetryEnding, unknown][] };
  const piece: RetriedWork = {
    async attempt() {
      log.tries++;
      if (down.value) {
        throw new Error("store away");
      }
    },
    waiting: () => void log.waited++,
    end: (how, error) => void log.ended.push([how, error]),
  };
  return { piece, log };
}

const options = { delaysMs: [1000, 2000], forMs: 10_000, max: 2 };

afterEach(() => vi.useRealTimers());

describe("background retries", () => {
  it("answers after the first try; a success there ends the work at once, with no timer", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const retries = createBackgroundRetries(options);
    const { piece, log } = work({ value: false });
    expect(await retries.run(piece)).toBe(true);
    expect(log).toEqual({ tries: 1, waited: 0, ended: [["at-once", undefined]] });
    expect(vi.getTimerCount()).toBe(0);
  });

  it("retries a failure after growing pauses, the last repeating, until it succeeds", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const retries = createBackgroundRetries(options);
    const down = { value: true };
    const { piece, log } = work(down);
    expect(await retries.run(piece)).toBe(false);
    expect(log.waited).toBe(1);
    expect(retries.waiting).toBe(1);
    await vi.advanceTimersByTimeAsync(999);
    expect(log.tries).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(log.tries).toBe(2);
    await vi.advanceTimersByTimeAsync(2000);
    expect(log.tries).toBe(3);
    down.value = false;
    await vi.advanceTimersByTimeAsync(2000);
    await retries.settled();
    expect(log).toEqual({ tries: 4, waited: 1, ended: [["done", undefined]] });
    expect(retries.waiting).toBe(0);
  });

  it("gives up once its time has run out, with the last failure", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const retries = createBackgroundRetries(options);
    const { piece, log } = work({ value: true });
    await retries.run(piece);
    await vi.advanceTimersByTimeAsync(9_000);
    expect(log.ended).toEqual([]);
    await vi.advanceTimersByTimeAsync(2_000);
    await retries.settled();
    expect(log.ended).toEqual([["gave-up", new Error("store away")]]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("stop ends every waiting work before it returns, and a later failure is not retried", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const retries = createBackgroundRetries(options);
    const { piece, log } = work({ value: true });
    await retries.run(piece);
    retries.stop();
    expect(log.ended).toEqual([["stopped", new Error("store away")]]);
    expect(vi.getTimerCount()).toBe(0);
    const later = work({ value: true });
    expect(await retries.run(later.piece)).toBe(false);
    expect(later.log).toMatchObject({
      tries: 1,
      waited: 0,
      ended: [["stopped", expect.any(Error)]],
    });
  });

  it("beyond `max` waiting, a failure ends over the cap; the cap is said once per episode", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const overCap = vi.fn();
    const retries = createBackgroundRetries({ ...options, overCap });
    const down = { value: true };
    const pieces = [work(down), work(down), work(down), work(down)];
    for (const { piece } of pieces) {
      await retries.run(piece);
    }
    expect(pieces.map(({ log }) => log.ended.map(([how]) => how))).toEqual([
      [],
      [],
      ["over-cap"],
      ["over-cap"],
    ]);
    expect(overCap).toHaveBeenCalledTimes(1);
    // The queue empties; the next time it fills up is said again.
    down.value = false;
    await vi.advanceTimersByTimeAsync(1000);
    await retries.settled();
    down.value = true;
    for (const { piece } of [work(down), work(down), work(down)]) {
      await retries.run(piece);
    }
    expect(overCap).toHaveBeenCalledTimes(2);
    retries.stop();
  });
});
