import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** Is `command` on PATH? */
export function commandExists(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

/** The names in the first cells of the table under `heading` in a markdown text. */
function tableNames(text: string, heading: string): string[] {
  const from = text.indexOf(heading);
  if (from === -1) {
    return [];
  }
  const to = text.indexOf("\n## ", from + heading.length);
  const names: string[] = [];
  for (const line of text.slice(from, to === -1 ? undefined : to).split("\n")) {
    const firstCell = line.split("|")[1] ?? "";
    for (const match of firstCell.matchAll(/`([A-Z][A-Z0-9_]+)`/g)) {
      names.push(match[1]!);
    }
  }
  return names;
}

/** The settings docs/configuration.md documents: its two tables' first cells. */
export function documentedSettingNames(root: string): { gateway: string[]; emulator: string[] } {
  const text = readFileSync(join(root, "docs/configuration.md"), "utf8");
  return {
    gateway: tableNames(text, "## Gateway settings"),
    emulator: tableNames(text, "## Emulator settings"),
  };
}

/** The keys of src/config.ts's schema: every variable the gateway reads. */
export function gatewaySettingNames(root: string): string[] {
  const config = readFileSync(join(root, "src/config.ts"), "utf8");
  const start = config.indexOf("const schema = z.object({");
  const end = config.indexOf("\n});", start);
  return [...config.slice(start, end).matchAll(/^ {2}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1]!);
}

/** Every `ACS_EMULATOR_*` variable the emulator package reads. */
export function emulatorSettingNames(root: string): string[] {
  const options = readFileSync(join(root, "packages/emulator/src/options.ts"), "utf8");
  return [...new Set([...options.matchAll(/"(ACS_EMULATOR_[A-Z0-9_]+)"/g)].map((m) => m[1]!))];
}

/**
 * Every setting the gateway reads: the keys of src/config.ts's schema, the emulator's variables
 * (the embedded emulator reads them too), and the names docs/configuration.md documents. Read from
 * the sources, so a setting added there without a pass-through in the deployment files fails the
 * tests that use this list.
 */
export function settingNames(root: string): string[] {
  const documented = documentedSettingNames(root);
  return [
    ...new Set([
      ...gatewaySettingNames(root),
      ...emulatorSettingNames(root),
      ...documented.gateway,
      ...documented.emulator,
    ]),
  ].sort();
}
