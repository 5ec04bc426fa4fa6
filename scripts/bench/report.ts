/** Statistics and formatting, the targets and sections a run collects, and BENCHMARKS.md. */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { quick, ROOT } from "./params.js";
import { PRODUCTION_NODE_FLAGS } from "./runners.js";

export const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
export const f0 = (n: number) => n.toFixed(0);
export const f1 = (n: number) => n.toFixed(1);
export const f2 = (n: number) => n.toFixed(2);
/** A ratio against a target: three decimals, so 0.749 does not print as a missed 0.75. */
export const ratio = (n: number) => `${n.toFixed(3)}x`;
export const mmm = (values: number[], f: (n: number) => string) =>
  values.length === 1
    ? f(values[0]!)
    : `${f(Math.min(...values))} / **${f(median(values))}** / ${f(Math.max(...values))}`;

/** What a run has written so far: each measure's section, and its targets, in report order. */
export interface Report {
  sections: string[];
  targets: { target: string; value: string; met: boolean }[];
}

/** Writes BENCHMARKS.md (and prints it): the run's machine and commit, targets, then sections. */
export function writeReport({ sections, targets }: Report, started: number): void {
  const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], {
    cwd: ROOT,
    encoding: "utf8",
  });
  // BENCHMARKS.md itself is rewritten by every run: it does not make the measured code differ.
  const dirty = spawnSync(
    "git",
    ["status", "--porcelain", "--untracked-files=no", "--", ".", ":!BENCHMARKS.md"],
    {
      cwd: ROOT,
      encoding: "utf8",
    },
  );
  const cpu = cpus();
  const machine = `${cpu.length} x ${cpu[0]?.model.trim() ?? "cpu"}, ${f1(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}`;
  const revision = `${commit.stdout.trim() || "unknown"}${dirty.stdout.trim() ? " (with uncommitted changes)" : ""}`;
  const report = [
    "# Benchmarks",
    "",
    `Written by \`npm run bench${quick ? " -- --quick" : ""}\` on ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC in ${f0((Date.now() - started) / 1000)} s. Commit ${revision}. Machine: ${machine}.${quick ? " **Quick run: one short round, for checking the harness; the numbers mean little.**" : ""}`,
    "",
    `How it runs: every server is compiled JavaScript in its own process with \`NODE_ENV=production\` (the gateway with node's flags from \`npm run start:prod\`: \`${PRODUCTION_NODE_FLAGS.join(" ")}\`); the load generator (autocannon 9, \`bench/load.ts\`) is another process; callers present RS256 JWTs verified against a JWKS the benchmark serves on loopback; Redis is a \`redis-server\` on a free port; ACS is the bundled emulator in its own process. Latencies are each response's own time (sub-millisecond), not autocannon's 1 ms histogram. All of it shares this machine's cores, so the load generator competes with the server it measures, as in the numbers of issue 14.`,
    "",
    "## Targets",
    "",
    "| target | measured | met |",
    "| --- | ---: | :---: |",
    ...targets.map((t) => `| ${t.target} | ${t.value} | ${t.met ? "yes" : "**no**"} |`),
    "",
    ...sections.flatMap((s) => [s, ""]),
  ].join("\n");
  writeFileSync(join(ROOT, "BENCHMARKS.md"), report);
  console.log(`\n${report}`);
}
