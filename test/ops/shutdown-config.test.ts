import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";

describe("SHUTDOWN_DRAIN_DELAY_MS", () => {
  it("defaults to no delay, and an empty value counts as unset", () => {
    expect(loadConfig({}).shutdownDrainDelayMs).toBe(0);
    expect(loadConfig({ SHUTDOWN_DRAIN_DELAY_MS: "" }).shutdownDrainDelayMs).toBe(0);
  });

  it("takes whole milliseconds up to two minutes", () => {
    expect(loadConfig({ SHUTDOWN_DRAIN_DELAY_MS: "5000" }).shutdownDrainDelayMs).toBe(5000);
    expect(loadConfig({ SHUTDOWN_DRAIN_DELAY_MS: "120000" }).shutdownDrainDelayMs).toBe(120_000);
  });

  it.each(["-1", "120001", "1.5", "5s"])("refuses %s with the setting's name", (value) => {
    expect(() => loadConfig({ SHUTDOWN_DRAIN_DELAY_MS: value })).toThrow(ConfigError);
    expect(() => loadConfig({ SHUTDOWN_DRAIN_DELAY_MS: value })).toThrow(/SHUTDOWN_DRAIN_DELAY_MS/);
  });
});
