import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { documentedSettingNames, emulatorSettingNames, gatewaySettingNames } from "./settings.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Every file of the repository as a clone has it: tracked, plus new files git would add. */
function repositoryFiles(): string[] {
  return execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z"], {
    cwd: ROOT,
    encoding: "utf8",
  })
    .split("\0")
    .filter((path) => path !== "" && !path.startsWith("test/fixtures/acs-identity-spec/2"));
}

describe("the repository stands alone", () => {
  it("no file reads or names anything beside the clone", () => {
    // Spelled in pieces so that this file does not name them itself.
    const outside = [
      ["..", "shared"].join("/"),
      ["CONTRACT", "md"].join("."),
      ["ARCHITECTURE", "md"].join("."),
      ["ACS-WIRE-FACTS", "md"].join("."),
      ["STYLE", "md"].join("."),
    ];
    const hits: string[] = [];
    for (const path of repositoryFiles()) {
      let text: string;
      try {
        text = readFileSync(join(ROOT, path), "utf8");
      } catch {
        continue; // deleted in the work tree, or not a file
      }
      text.split("\n").forEach((line, index) => {
        if (outside.some((name) => line.includes(name))) {
          hits.push(`${path}:${index + 1}: ${line.trim().slice(0, 120)}`);
        }
      });
    }
    expect(hits).toEqual([]);
  });

  it("documents every setting the gateway and the emulator read, and no setting they do not", () => {
    const documented = documentedSettingNames(ROOT);
    const gateway = gatewaySettingNames(ROOT);
    const emulator = emulatorSettingNames(ROOT);
    expect(gateway.length).toBeGreaterThan(20);
    expect(emulator.length).toBeGreaterThan(5);
    expect(
      gateway.filter((name) => !documented.gateway.includes(name)),
      "read by src/config.ts, missing from docs/configuration.md",
    ).toEqual([]);
    expect(
      emulator.filter((name) => !documented.emulator.includes(name)),
      "read by the emulator, missing from docs/configuration.md",
    ).toEqual([]);
    // OTEL_* and AZURE_* are read by the OpenTelemetry SDK and @azure/identity themselves.
    const readByLibraries = /^(OTEL|AZURE|IDENTITY)_/;
    expect(
      documented.gateway.filter((name) => !gateway.includes(name) && !readByLibraries.test(name)),
      "documented, but read by nothing",
    ).toEqual([]);
    expect(documented.emulator.filter((name) => !emulator.includes(name))).toEqual([]);
  });
});
