import { trace } from "@opentelemetry/api";
import { describe, expect, it } from "vitest";
import { tracingActive, withSpan } from "../../src/telemetry/tracing.js";

describe("withSpan without tracing", () => {
  it("runs the function with a non-recording span and returns its value", async () => {
    expect(tracingActive()).toBe(false);
    const result = await withSpan("work", { "acsgw.detail": 1 }, async (span) => {
      expect(span.isRecording()).toBe(false);
      // No span becomes active either: Redis commands inside make no span.
      expect(trace.getActiveSpan()).toBeUndefined();
      return 42;
    });
    expect(result).toBe(42);
  });

  it("rethrows what the function throws, unchanged", async () => {
    const failure = new Error("upstream said no");
    await expect(
      withSpan("work", {}, async () => {
        throw failure;
      }),
    ).rejects.toBe(failure);
  });
});
