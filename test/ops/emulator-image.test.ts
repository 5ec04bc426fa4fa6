/**
 * The emulator's own image (packages/emulator/Dockerfile), read offline: there is no Docker engine
 * here. What it builds from, what it runs, its HEALTHCHECK (whose command is run here against an
 * emulator, as the engine would run it in the container), and the tool versions it pins.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { createTestCa, startTestEmulator, type TestCa } from "../helpers/emulator.js";
import { freePort } from "../helpers/ports.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FOLDER = join(ROOT, "packages/emulator");
const dockerfile = readFileSync(join(FOLDER, "Dockerfile"), "utf8");
const manifest = JSON.parse(readFileSync(join(FOLDER, "package.json"), "utf8")) as {
  bin: Record<string, string>;
  files: string[];
  engines: { node: string };
};
const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as {
  packages: Record<string, { version?: string }>;
};

interface Instruction {
  keyword: string;
  args: string;
  /** The stage it belongs to (its `FROM ... AS name`), in order. */
  stage: number;
}

/** The instructions, continuation lines joined, comments and parser directives left out. */
const instructions: Instruction[] = (() => {
  let stage = -1;
  return dockerfile
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const keyword = line.split(/\s/, 1)[0]!.toUpperCase();
      if (keyword === "FROM") {
        stage += 1;
      }
      return { keyword, args: line.slice(keyword.length).trim(), stage };
    });
})();
const lastStage = Math.max(...instructions.map((i) => i.stage));
const runtime = instructions.filter((i) => i.stage === lastStage);
const named = (list: Instruction[], keyword: string) => list.filter((i) => i.keyword === keyword);

describe("the emulator image (packages/emulator/Dockerfile, read offline)", () => {
  it("builds from its own folder only: every COPY names a file or folder in packages/emulator", () => {
    const copies = named(instructions, "COPY").filter((i) => !i.args.startsWith("--from="));
    expect(copies.length).toBeGreaterThan(0);
    const sources = copies.flatMap((copy) => copy.args.split(/\s+/).slice(0, -1));
    for (const source of sources) {
      expect(source, source).not.toMatch(/^(\/|--)|(^|\/)\.\.(\/|$)/);
      expect(existsSync(join(FOLDER, source)), source).toBe(true);
    }
    // No ADD (no URL or archive from elsewhere); the stages copy from each other only.
    expect(named(instructions, "ADD")).toEqual([]);
    for (const copy of named(instructions, "COPY").filter((i) => i.args.startsWith("--from="))) {
      const from = /^--from=(\S+)/.exec(copy.args)![1];
      expect(named(instructions, "FROM").map((i) => i.args.split(/\s+/).at(-1))).toContain(from);
    }
    // What `npm pack` needs beside the build: the package's own files, and a tsconfig that
    // reaches nothing outside the folder.
    for (const file of manifest.files.filter((f) => !f.startsWith("!") && f !== "dist")) {
      expect(sources, file).toContain(file);
    }
    expect(sources).toEqual(expect.arrayContaining(["tsconfig.json", "src"]));
    const tsconfig = JSON.parse(readFileSync(join(FOLDER, "tsconfig.json"), "utf8")) as {
      extends?: unknown;
      include?: string[];
    };
    expect(tsconfig.extends).toBeUndefined();
    expect(tsconfig.include).toEqual(["src"]);
  });

  it("runs acs-identity-emulator, installed from the package's tarball, on the Node major of its engines", () => {
    expect(Object.keys(manifest.bin)).toEqual(["acs-identity-emulator"]);
    expect(named(runtime, "ENTRYPOINT")).toEqual([]);
    const cmd = named(runtime, "CMD").at(-1)!;
    expect(JSON.parse(cmd.args)).toEqual(["acs-identity-emulator"]);
    // Found on PATH: the app's node_modules/.bin, where the tarball's install puts the command.
    const workdir = named(runtime, "WORKDIR").at(-1)!.args;
    expect(
      named(runtime, "ENV")
        .map((i) => i.args)
        .join(" "),
    ).toContain(`PATH=${workdir}/node_modules/.bin:$PATH`);
    expect(
      named(runtime, "RUN")
        .map((i) => i.args)
        .join(" "),
    ).toMatch(/npm install --omit=dev .*\/tmp\/emulator\.tgz/);
    const engineMajor = /^>=(\d+)\./.exec(manifest.engines.node)![1];
    for (const from of named(instructions, "FROM")) {
      expect(from.args).toMatch(new RegExp(`^node:${engineMajor}[-.]`));
    }
  });

  it("pins the build's tools at the versions of the repository's lock file", () => {
    const installs = named(instructions, "RUN")
      .flatMap((i) => i.args.split("&&"))
      .map((command) => command.trim().split(/\s+/))
      .filter((words) => words[0] === "npm" && words[1] === "install");
    expect(installs.length).toBeGreaterThan(0);
    const packages = installs.flatMap((words) =>
      words.slice(2).filter((word) => !word.startsWith("-") && !word.endsWith(".tgz")),
    );
    // Every package named is pinned (`name@x.y.z`), and at the lock file's version.
    for (const spec of packages) {
      const match = /^((?:@[\w.-]+\/)?[\w.-]+)@(\d+\.\d+\.\d+)$/.exec(spec);
      expect(match, spec).not.toBeNull();
      const [, name, version] = match!;
      expect(lock.packages[`node_modules/${name}`]?.version, name).toBe(version);
    }
  });
});

describe("its HEALTHCHECK, run as the engine runs it", { timeout: 60_000 }, () => {
  const healthcheck = named(runtime, "HEALTHCHECK");
  /** `HEALTHCHECK [--option=value ...] CMD ["exec", "form"]`. */
  const command = (): string[] => {
    const at = healthcheck[0]!.args.indexOf("CMD ");
    return JSON.parse(healthcheck[0]!.args.slice(at + "CMD ".length)) as string[];
  };
  let ca: TestCa;
  let plain: Emulator;
  let tls: Emulator;
  beforeAll(async () => {
    ca = createTestCa();
    [plain, tls] = await Promise.all([
      startTestEmulator(),
      startTestEmulator({ tls: { cert: ca.cert, key: ca.key } }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([plain?.close(), tls?.close()]);
    ca?.remove();
  });

  /** The health check's exit code with the container's settings `env` (node from this PATH). */
  const check = (env: Record<string, string>) =>
    new Promise<number>((resolve) => {
      const [file, ...args] = command();
      execFile(
        file!,
        args,
        { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env } },
        (error) => resolve(error ? ((error as { code?: number }).code ?? 1) : 0),
      );
    });
  const portOf = (emulator: Emulator) => new URL(emulator.endpoint).port;

  it("is one, in exec form, on the unsigned /emulator/health", () => {
    expect(healthcheck).toHaveLength(1);
    expect(healthcheck[0]!.args).toMatch(/^(--\S+\s+)*CMD \[/);
    expect(command().join(" ")).toContain("/emulator/health");
  });

  it("passes against a running emulator, over http and (ACS_EMULATOR_TLS_CERT set) over https; fails with nothing listening", async () => {
    const nothing = await freePort();
    const [http, https, down] = await Promise.all([
      check({ ACS_EMULATOR_PORT: portOf(plain) }),
      check({
        ACS_EMULATOR_PORT: portOf(tls),
        ACS_EMULATOR_TLS_CERT: ca.certFile,
        NODE_EXTRA_CA_CERTS: ca.caFile,
      }),
      check({ ACS_EMULATOR_PORT: String(nothing) }),
    ]);
    expect({ http, https, down }).toEqual({ http: 0, https: 0, down: 1 });
  });
});
