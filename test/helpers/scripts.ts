import { createHash } from "node:crypto";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** Inside the repository, so the compiled script imports its packages from node_modules. */
const OUT_DIR = join(ROOT, "node_modules/.cache/acsgw-test-scripts");
const compiled = new Map<string, Promise<string>>();

/** A script given as text: its relative imports resolve from `resolveDir`. */
export interface InlineScript {
  /** For the compiled file's name. */
  name: string;
  source: string;
  resolveDir: string;
}

/**
 * `entry` (a TypeScript script a test runs in a child process: an SDK suite, a helper script) as
 * one JavaScript module for plain `node`: its own imports bundled, packages left to node_modules,
 * as tsx would load them. Started with `--import tsx` instead, every child spent about 1.5 s of
 * CPU in tsx's loader before its first line ran, and a dozen children run per suite; what the
 * child does, and how it reaches the emulator, is the same. Compiled once per test process; the
 * file is named by its content, and written whole (rename), so concurrent test processes never
 * see a partial one.
 */
export function compileScript(entry: string | InlineScript): Promise<string> {
  const key = typeof entry === "string" ? entry : `${entry.resolveDir}\0${entry.source}`;
  let file = compiled.get(key);
  if (!file) {
    file = (async () => {
      const result = await build({
        ...(typeof entry === "string"
          ? { entryPoints: [entry] }
          : { stdin: { contents: entry.source, resolveDir: entry.resolveDir, loader: "ts" } }),
        bundle: true,
        packages: "external",
        platform: "node",
        format: "esm",
        target: "node20",
        write: false,
        logLevel: "silent",
        // tsconfig.json's `paths` (the workspace packages' sources), as tsx resolves them.
        tsconfig: join(ROOT, "tsconfig.json"),
      });
      const text = result.outputFiles[0]!.contents;
      const hash = createHash("sha256").update(text).digest("hex").slice(0, 16);
      const name =
        typeof entry === "string"
          ? entry.replace(/^.*\//, "").replace(/\.[cm]?ts$/, "")
          : entry.name;
      const out = join(OUT_DIR, `${name}-${hash}.mjs`);
      mkdirSync(OUT_DIR, { recursive: true });
      const partial = `${out}.${process.pid}.tmp`;
      writeFileSync(partial, text);
      renameSync(partial, out);
      return out;
    })();
    compiled.set(key, file);
    file.catch(() => compiled.delete(key));
  }
  return file;
}
