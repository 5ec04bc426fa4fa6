import { readdirSync, readFileSync } from "node:fs";
import { expect, it } from "vitest";

/**
 * The emulator must not share the gateway's request rules (scopes, lifetimes, id formats): if it
 * did, a mistake in them would pass both sides unnoticed. Only the logger is shared.
 */
it("imports nothing from the gateway but the logger", () => {
  const dir = new URL("../../src/emulator/", import.meta.url);
  const outside: string[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts"))) {
    const source = readFileSync(new URL(file, dir), "utf8");
    for (const match of source.matchAll(/from\s+"(\.\.\/[^"]+)"/g)) {
      if (match[1] !== "../logger.js") {
        outside.push(`${file}: ${match[1]}`);
      }
    }
  }
  expect(outside).toEqual([]);
});
