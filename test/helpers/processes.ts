import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { createInterface } from "node:readline";
import { expect } from "vitest";

/** A gateway started as a user starts it: a command in a child process, found by its ready line. */
export interface GatewayProcess {
  child: ChildProcess;
  /** The URL of the ready line (`http://HOST:PORT/graphql`). */
  url: string;
  /** Everything the process wrote so far, stdout and stderr. */
  output(): string;
  /** Resolves with the exit code (or signal name) once the process exited. */
  exited: Promise<number | string | null>;
}

/**
 * Starts `command` (e.g. `npm start`) in `cwd` with exactly `env` (plus PATH and HOME) and resolves
 * once a log line carries the gateway's `url`; rejects with the output when the process exits
 * first. The caller stops it (`child.kill()`), and should in afterAll even when a step failed.
 */
export function spawnGateway(
  command: string,
  args: string[],
  options: { cwd: string; env: Record<string, string> },
): Promise<GatewayProcess> {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | string | null>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal)),
  );
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      output += `${line}\n`;
      try {
        const entry = JSON.parse(line) as { url?: unknown };
        if (typeof entry.url === "string") {
          resolve({ child, url: entry.url, output: () => output, exited });
        }
      } catch {
        // npm's own lines, not a log line
      }
    });
    void exited.then((code) =>
      reject(
        new Error(`${command} ${args.join(" ")} exited (${code}) before listening:\n${output}`),
      ),
    );
  });
}

/** The pids of `pid`'s children, from /proc (Linux), so a test can check none outlives its parent. */
export function childPids(pid: number): number[] {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
    return children === "" ? [] : children.split(/\s+/).map(Number);
  } catch {
    return [];
  }
}

/** Is a process with this pid still there (a zombie counts as gone)? */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The state is the field after the parenthesised command name.
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Sends a GraphQL operation and returns the JSON answer. */
export async function postGraphQL(
  url: string,
  query: string,
  variables?: Record<string, unknown>,
): Promise<any> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  return response.json();
}

/**
 * `createUser`, then a VOIP `issueToken` for that user, each answered without errors: the two
 * calls that show a gateway reaches ACS with whatever credential it was given.
 */
export async function createUserWithToken(url: string): Promise<{ id: string; token: string }> {
  const created = await postGraphQL(url, "mutation { createUser { id } }");
  expect(created.errors).toBeUndefined();
  const id = created.data.createUser.id as string;
  const issued = await postGraphQL(
    url,
    "mutation ($u: ID) { issueToken(userId: $u, scopes: [VOIP]) { token } }",
    { u: id },
  );
  expect(issued.errors).toBeUndefined();
  return { id, token: issued.data.issueToken.token as string };
}

/** What `npm pack --json` reports of one tarball. */
export interface PackedTarball {
  filename: string;
  files: { path: string }[];
  size: number;
  unpackedSize: number;
}

/**
 * A workspace package as a user gets it: `npm pack -w <name>` (its prepack builds it) into a new
 * app folder outside the repository, installed there from the tarball with `extra` packages
 * beside it. `--prefer-offline`: what the repository's lock file holds is in npm's cache after
 * `npm ci`, so this works without a registry too. The caller removes `app`.
 */
export async function packIntoApp(
  repository: string,
  workspace: string,
  app: { dir: string; manifest: Record<string, unknown>; extra?: string[] },
): Promise<{ packed: PackedTarball; tarball: string }> {
  const run = promisify(execFile);
  const { stdout } = await withRepositoryLock(repository, buildLock(workspace), () =>
    run("npm", ["pack", "-w", workspace, "--pack-destination", app.dir, "--json"], {
      cwd: repository,
    }),
  );
  // npm prints the prepack build's own lines before the JSON report.
  const [packed] = JSON.parse(stdout.slice(stdout.indexOf("["))) as PackedTarball[];
  const tarball = join(app.dir, packed!.filename);
  writeFileSync(join(app.dir, "package.json"), JSON.stringify(app.manifest));
  await run(
    "npm",
    ["install", tarball, ...(app.extra ?? []), "--prefer-offline", "--no-audit", "--no-fund"],
    { cwd: app.dir },
  );
  return { packed: packed!, tarball };
}

/**
 * The lock of a workspace package's build output in the work tree (its dist/), for
 * lockRepository. `npm run build` writes the emulator's dist/ (and the gateway's own, which
 * nothing else writes): it takes the emulator's lock.
 */
export function buildLock(workspace: string): string {
  return `build-${workspace.replace(/[^\w-]/g, "_")}`;
}

/**
 * Takes the lock `name` of the repository at `repository`, across every test process on this
 * machine (other workers, another `vitest run` in the same checkout), and resolves with its
 * release. For build outputs in the work tree: `npm pack -w @acs-identity-gateway/emulator` (its
 * prepack) and `npm run build` both rewrite packages/emulator/dist/, and a file rewritten while
 * npm packs it, or while `npm run start:prod` imports it, is a truncated file. A lock directory
 * (mkdir is atomic) holding the owner's pid; a lock whose owner is gone is taken over.
 */
export async function lockRepository(repository: string, name: string): Promise<() => void> {
  const id = createHash("sha256").update(resolve(repository)).digest("hex").slice(0, 12);
  const dir = join(tmpdir(), `acsgw-${name}-${id}.lock`);
  const owner = join(dir, "pid");
  const deadline = Date.now() + 600_000;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(owner, String(process.pid));
      return () => rmSync(dir, { recursive: true, force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
        throw error;
      }
    }
    let pid = Number.NaN;
    try {
      pid = Number(readFileSync(owner, "utf8"));
    } catch {
      // made a moment ago, its pid not written yet
    }
    // An owner that is gone, or one that died between its mkdir and writing its pid.
    const stale = Number.isInteger(pid) && pid > 0 ? !isRunning(pid) : olderThan(dir, 30_000);
    if (stale) {
      rmSync(dir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(`the ${name} lock (${dir}) was held for 10 minutes`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `task` while holding the lock `name` (see lockRepository). */
export async function withRepositoryLock<T>(
  repository: string,
  name: string,
  task: () => Promise<T>,
): Promise<T> {
  const release = await lockRepository(repository, name);
  try {
    return await task();
  } finally {
    release();
  }
}

function olderThan(path: string, ms: number): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs > ms;
  } catch {
    return false;
  }
}
