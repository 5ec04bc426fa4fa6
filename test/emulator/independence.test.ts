import { readdirSync, readFileSync } from "node:fs";
import { expect, it } from "vitest";

const root = new URL("../../packages/emulator/", import.meta.url);

/**
 * The emulator is a tool of its own (`@acs-identity-gateway/emulator`), and it must not share the
 * gateway's request rules (scopes, lifetimes, id formats): if it did, a mistake in them would pass
 * both sides unnoticed. So its sources import nothing outside its own folder, and its package
 * depends on no package of this repository.
 */
it("imports nothing from outside its package and depends on no gateway package", () => {
  const dir = new URL("src/", root);
  const outside: string[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts"))) {
    const source = readFileSync(new URL(file, dir), "utf8");
    for (const match of source.matchAll(/(?:from|import)\s*\(?\s*"([^"]+)"/g)) {
      const specifier = match[1]!;
      if (specifier.startsWith("..") || specifier.startsWith("@acs-identity-gateway/")) {
        outside.push(`${file}: ${specifier}`);
      }
    }
  }
  expect(outside).toEqual([]);
  const pkg = JSON.parse(readFileSync(new URL("package.json", root), "utf8"));
  const dependencies = Object.keys({ ...pkg.dependencies, ...pkg.peerDependencies });
  expect(dependencies.filter((name) => name.startsWith("@acs-identity-gateway/"))).toEqual([]);
  expect(dependencies).not.toContain("acs-identity-gateway");
});
