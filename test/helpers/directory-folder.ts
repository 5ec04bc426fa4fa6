import { execFile } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { withRepositoryLock } from "./processes.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
let template: Promise<string> | undefined;

/**
 * An empty PGlite data folder (initdb done, nothing else), kept in node_modules/.cache for every
 * later run: made once per PGlite version, in a child process, under a lock so that concurrent
 * test processes make it once.
 */
function directoryTemplate(): Promise<string> {
  template ??= (async () => {
    // Its exports do not include package.json: read it where npm installed it.
    const { version } = JSON.parse(
      readFileSync(join(ROOT, "node_modules/@electric-sql/pglite/package.json"), "utf8"),
    ) as { version: string };
    const dir = join(ROOT, "node_modules/.cache/acsgw-test-directory", `pglite-${version}`);
    const made = () => existsSync(join(dir, "PG_VERSION"));
    if (!made()) {
      await withRepositoryLock(ROOT, "directory-template", async () => {
        if (made()) {
          return;
        }
        const partial = `${dir}.${process.pid}.tmp`;
        rmSync(partial, { recursive: true, force: true });
        mkdirSync(dirname(partial), { recursive: true });
        await promisify(execFile)(
          process.execPath,
          [
            "--input-type=module",
            "-e",
            `const { PGlite } = await import("@electric-sql/pglite");
             const db = await PGlite.create({ dataDir: process.argv[1] });
             await db.close();`,
            partial,
          ],
          { cwd: ROOT },
        );
        renameSync(partial, dir);
      });
    }
    return dir;
  })();
  template.catch(() => (template = undefined));
  return template;
}

/**
 * A data folder of its own for a spawned gateway's directory (DIRECTORY_DATA_DIR), for a test
 * whose requests reach the directory: a copy of an empty PGlite folder, which the gateway opens in
 * about a second of CPU where `memory` (or a new folder) costs four to five seconds of initdb.
 * Never the repository's .data/directory, which other test processes may open too. A gateway that
 * never touches its directory is cheaper still with `memory`: that one is only made on first use.
 */
export async function directoryDataDir(): Promise<{ dir: string; remove(): void }> {
  const from = await directoryTemplate();
  const parent = mkdtempSync(join(tmpdir(), "acsgw-directory-"));
  const dir = join(parent, "data");
  cpSync(from, dir, { recursive: true });
  return { dir, remove: () => rmSync(parent, { recursive: true, force: true }) };
}
