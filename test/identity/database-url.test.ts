import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";

describe("DATABASE_URL", () => {
  it("is optional: unset or empty keeps the mappings in the embedded database or memory", () => {
    expect(loadConfig({}).databaseUrl).toBeUndefined();
    expect(loadConfig({ DATABASE_URL: "" }).databaseUrl).toBeUndefined();
  });

  it("accepts postgres:// and postgresql:// URLs", () => {
    const url = "postgres://gw:secret@db.internal:5432/gateway?sslmode=require";
    expect(loadConfig({ DATABASE_URL: url }).databaseUrl).toBe(url);
    expect(loadConfig({ DATABASE_URL: "postgresql://db/gw" }).databaseUrl).toBe(
      "postgresql://db/gw",
    );
  });

  it("refuses anything else at start, without echoing the value (it may hold a password)", () => {
    for (const value of ["mysql://u:hunter2@db/gw", "hunter2 not a url"]) {
      let thrown: unknown;
      try {
        loadConfig({ DATABASE_URL: value });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(ConfigError);
      const message = (thrown as ConfigError).message;
      expect(message).toMatch(/DATABASE_URL/);
      expect(message).not.toContain("hunter2");
    }
  });
});
