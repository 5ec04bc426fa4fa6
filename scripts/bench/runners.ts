/**
 * The processes a run measures and drives: the ceiling and the floor (bench/ceiling-server.ts),
 * the gateway (src/main.ts), the ACS emulator, and the load generators (bench/load.ts,
 * bench/refresh.ts), each compiled JavaScript in its own process; and the CPU and memory readings
 * of a process from Linux's /proc.
 */
import { fork, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StringDecoder } from "node:string_decoder";
import type { LoadJob, LoadResult } from "../../bench/load.js";
import type { RefreshJob, RefreshResult } from "../../bench/refresh.js";
import { DIST, log, ROOT } from "./params.js";
import { freePort, type Issuer } from "./services.js";

export interface Child {
  process: ChildProcess;
  /** The first stdout match of the (first) ready pattern. */
  ready: RegExpExecArray;
  /** stdout lines after start-up that matched `watch`. */
  lines: string[];
  stop(): Promise<void>;
}

export const children = new Set<ChildProcess>();

/** Starts `file`; ready once stdout matched every pattern of `ready` (in any order). */
export function startChild(
  file: string,
  env: Record<string, string>,
  ready: RegExp | readonly RegExp[],
  nodeArgs: string[] = [],
  watch?: RegExp,
): Promise<Child> {
  const child = spawn(process.execPath, [...nodeArgs, join(DIST, file)], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  children.add(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  void exited.then(() => children.delete(child));
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-2000);
  });
  const lines: string[] = [];
  const waiting = Array.isArray(ready) ? [...ready] : [ready as RegExp];
  let first: RegExpExecArray | undefined;
  return new Promise((resolve, reject) => {
    let buffer = "";
    let resolved = false;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${file} did not start in 60 s: ${stderr}`));
    }, 60_000);
    let stopping = false;
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (resolved && !stopping) {
        // A measured server that dies mid-run would otherwise show only as a missing /proc file.
        log(`${file} exited (${code ?? signal}) while it was measured: ${stderr}`);
      }
      reject(new Error(`${file} exited (${code}) before it was ready: ${stderr}`));
    });
    const decoder = new StringDecoder("utf8");
    // Bytes, decoded only while a line is still looked for: after start-up a gateway writes an
    // access line per request, and this process shares the machine's cores with it.
    child.stdout!.on("data", (bytes: Buffer) => {
      if (resolved && watch === undefined) {
        return;
      }
      buffer += decoder.write(bytes);
      const end = buffer.lastIndexOf("\n");
      if (end < 0) {
        return;
      }
      const complete = buffer.slice(0, end + 1);
      buffer = buffer.slice(end + 1);
      if (resolved) {
        // After start-up only the lines a caller asked to watch (e.g. --trace-gc) are kept.
        for (const line of complete.split("\n")) {
          if (watch?.test(line)) {
            lines.push(line);
          }
        }
        return;
      }
      for (const pattern of [...waiting]) {
        const match = pattern.exec(complete);
        if (match) {
          waiting.splice(waiting.indexOf(pattern), 1);
          if (pattern === (Array.isArray(ready) ? ready[0] : ready)) {
            first = match;
          }
        }
      }
      if (waiting.length === 0) {
        resolved = true;
        clearTimeout(timer);
        resolve({
          process: child,
          ready: first!,
          lines,
          async stop() {
            stopping = true;
            if (child.exitCode === null && child.signalCode === null) {
              child.kill("SIGTERM");
            }
            await exited;
          },
        });
      }
    });
  });
}

function ask<T>(file: string, job: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = fork(join(DIST, file), [], {
      cwd: ROOT,
      // Not tsx's loader flags from this process: the load generator is plain compiled JS.
      execArgv: [],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    children.add(child);
    child.once("exit", () => children.delete(child));
    child.once("message", (message: { result?: T; error?: string }) => {
      if (message.error !== undefined) {
        reject(new Error(`${file}: ${message.error}`));
      } else {
        resolve(message.result!);
      }
    });
    child.once("exit", (code) => {
      if (code !== 0) {
        reject(new Error(`${file} exited with ${code}`));
      }
    });
    child.send(job as object);
  });
}

export const load = (job: LoadJob) => ask<LoadResult>("bench/load.js", job);
export const refresh = (job: RefreshJob) => ask<RefreshResult>("bench/refresh.js", job);

export interface Emulator extends Child {
  connectionString: string;
  counters(): Promise<Record<string, number>>;
}

export async function startEmulatorProcess(env: Record<string, string>): Promise<Emulator> {
  const child = await startChild(
    "bench/emulator-process.js",
    { LOG_LEVEL: "silent", ...env },
    /COMMUNICATION_SERVICES_CONNECTION_STRING=(\S+)\n/,
  );
  return {
    ...child,
    connectionString: child.ready[1]!,
    counters: () =>
      new Promise((resolve) => {
        child.process.once("message", (m: { counters: Record<string, number> }) =>
          resolve(m.counters),
        );
        child.process.send("counters");
      }),
  };
}

/**
 * node's flags in `npm run start:prod` (and the Dockerfile's CMD): the gateway is measured as it
 * runs in production, e.g. with its young-generation size.
 */
export const PRODUCTION_NODE_FLAGS = (
  JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
    scripts: Record<string, string>;
  }
).scripts["start:prod"]!.split(/\s+/).filter((word) => word.startsWith("--"));

/** What every gateway of a run shares: the callers' issuer and (unless "") the Redis. */
export interface Common {
  issuer: Issuer;
  redisUrl: string;
}

export interface Gateway extends Child {
  url: string;
  pid: number;
}

export async function startGateway(
  common: Common,
  connectionString: string,
  nodeArgs: string[] = [],
  watch?: RegExp,
  /** Its embedded directory's folder; by default a new one of its own. */
  directoryDataDir = mkdtempSync(join(tmpdir(), "acsgw-bench-directory-")),
): Promise<Gateway> {
  const port = await freePort();
  const child = await startChild(
    "src/main.js",
    {
      NODE_ENV: "production",
      LOG_LEVEL: "info",
      HOST: "127.0.0.1",
      PORT: String(port),
      AUTH_MODE: "jwt",
      AUTH_JWKS_URL: common.issuer.jwksUrl,
      AUTH_ISSUER: common.issuer.issuer,
      AUTH_AUDIENCE: common.issuer.audience,
      REDIS_URL: common.redisUrl,
      COMMUNICATION_SERVICES_CONNECTION_STRING: connectionString,
      // Its own embedded directory folder: several gateways run at once, from one working
      // directory, and must not open one PGlite folder together.
      DIRECTORY_DATA_DIR: directoryDataDir,
      // The per-caller mint budget still runs (its Redis round trip is part of the cost); the
      // benchmark's single admin must not exhaust it.
      RATE_LIMIT_ACS_CALLS_PER_MINUTE: "1000000",
    },
    // Also its directory open: PGlite's first open costs seconds of CPU in the background, which
    // would otherwise fall into the first measured rounds (and into a profile of a fresh start).
    [/gateway ready at/, /"database open and migrated"/],
    [...PRODUCTION_NODE_FLAGS, ...nodeArgs],
    watch,
  );
  return { ...child, url: `http://127.0.0.1:${port}/graphql`, pid: child.process.pid! };
}

export async function graphql(
  url: string,
  authorization: string,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: Record<string, unknown>; errors?: unknown[] };
  if (body.errors || !body.data) {
    throw new Error(`GraphQL error: ${JSON.stringify(body.errors).slice(0, 300)}`);
  }
  return body.data;
}

/** Runs `work` over `items` with at most `concurrency` at a time. */
export async function pool<T, R>(
  items: T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<R>,
) {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await work(items[i]!, i);
      }
    }),
  );
  return out;
}

/** CPU time (user + system) a process has used so far, ms: Linux's /proc, in clock ticks of 10 ms. */
export function cpuMsOf(pid: number | undefined): number {
  if (pid === undefined) {
    return NaN;
  }
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}
