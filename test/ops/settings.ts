import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** Is `command` on PATH? */
export function commandExists(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

/**
 * Every setting the gateway reads: the keys of src/config.ts's schema, the emulator's variables
 * (the embedded emulator reads them too), and the names in CONTRACT.md's settings tables (when
 * ../shared is there). Read from the sources, so a setting added there without a pass-through in
 * the deployment files fails the tests that use this list.
 */
export function settingNames(root: string): string[] {
  const names = new Set<string>();
  const config = readFileSync(join(root, "src/config.ts"), "utf8");
  const start = config.indexOf("const schema = z.object({");
  const end = config.indexOf("\n});", start);
  for (const match of config.slice(start, end).matchAll(/^ {2}([A-Z][A-Z0-9_]+):/gm)) {
    names.add(match[1]!);
  }
  const emulator = readFileSync(join(root, "packages/emulator/src/options.ts"), "utf8");
  for (const match of emulator.matchAll(/"(ACS_EMULATOR_[A-Z0-9_]+)"/g)) {
    names.add(match[1]!);
  }
  const contract = join(root, "../shared/CONTRACT.md");
  if (existsSync(contract)) {
    const text = readFileSync(contract, "utf8");
    for (const heading of ["## Gateway settings", "## Emulator settings"]) {
      const from = text.indexOf(heading);
      const to = text.indexOf("\n## ", from + heading.length);
      for (const line of text.slice(from, to === -1 ? undefined : to).split("\n")) {
        const firstCell = line.split("|")[1] ?? "";
        for (const match of firstCell.matchAll(/`([A-Z][A-Z0-9_]+)`/g)) {
          names.add(match[1]!);
        }
      }
    }
  }
  return [...names].sort();
}
