/** Where the benchmark runs from, its command-line switches, and the quick and full parameters. */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const DIST = join(ROOT, "dist");
export const quick = process.argv.includes("--quick");
export const build = !process.argv.includes("--no-build");

export const P = quick
  ? {
      rounds: 1,
      seconds: 2,
      missSeconds: 2,
      warmSeconds: 1,
      refreshUsers: 100,
      refreshRequests: 3000,
      tokens: 5000,
      queries: 2000,
      profileSeconds: 2,
      floorCalls: 10,
    }
  : {
      rounds: 5,
      seconds: 6,
      missSeconds: 4,
      warmSeconds: 3,
      refreshUsers: 400,
      refreshRequests: 20_000,
      tokens: 100_000,
      queries: 20_000,
      profileSeconds: 8,
      floorCalls: 60,
    };
export const CONNECTIONS = 50;
export const LATENCY_MS = 100;

export const log = (line: string) =>
  console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);
