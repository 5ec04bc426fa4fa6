/**
 * `npm run bench [-- --quick] [-- --no-build]`: the gateway side by side with its ceiling, in one
 * run, under production settings. Writes BENCHMARKS.md.
 *
 * Every measured server runs as compiled JavaScript (`tsc -p bench/tsconfig.json` into dist/) in
 * its own process with NODE_ENV=production; the load generator (autocannon) is a process of its
 * own too; this script only orchestrates (it runs under tsx) and serves the JWKS the gateways
 * verify callers against. Redis is a redis-server on a free port, started and stopped here.
 *
 * Throughput scenarios are interleaved: each round runs every scenario once, so drift on a shared
 * machine (other processes, thermal, GC of the orchestrator) spreads over all of them alike.
 *
 * The parts, in scripts/bench/: params.ts (quick and full), services.ts (Redis, the JWKS),
 * runners.ts (the measured processes and load runs), scenarios.ts (the throughput rows),
 * throughput.ts (measures 1-4), refresh-workload.ts (5), memory.ts (6), profiling.ts (CPU profile
 * and GC pauses, read by analysis.ts), report.ts (formatting, targets, BENCHMARKS.md).
 */
import "reflect-metadata";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { runMemory } from "./bench/memory.js";
import { build, log, ROOT } from "./bench/params.js";
import { runProfiles } from "./bench/profiling.js";
import { runRefreshWorkload } from "./bench/refresh-workload.js";
import { writeReport, type Report } from "./bench/report.js";
import { children } from "./bench/runners.js";
import { prepareScenarios, startServers } from "./bench/scenarios.js";
import { startIssuer, startRedis, type Issuer, type RedisProcess } from "./bench/services.js";
import { runThroughput } from "./bench/throughput.js";

if (build) {
  // The compiled gateway imports the emulator package by name, i.e. its own dist/ (which a fresh
  // clone does not have), so the emulator is built first, as `npm run build` does.
  log(
    "compiling the emulator package, then src/ and bench/ into dist/ (tsc -p bench/tsconfig.json)",
  );
  const tsc = (project: string) =>
    spawnSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", project], {
      stdio: "inherit",
    }).status;
  if (
    tsc(join(ROOT, "packages/emulator/tsconfig.json")) !== 0 ||
    tsc(join(ROOT, "bench/tsconfig.json")) !== 0
  ) {
    process.exit(1);
  }
}

let redis: RedisProcess | undefined;
const owned: { tokenRedis?: RedisProcess } = {};
let issuer: Issuer | undefined;
const started = Date.now();
const report: Report = { sections: [], targets: [] };

try {
  issuer = await startIssuer();
  redis = await startRedis();
  const common = { issuer, redisUrl: redis.url };
  const sign = (claims: Record<string, unknown>, subject: string) =>
    issuer!.sign(claims, { subject, expiresIn: "3h" });
  const admin = `Bearer ${await sign({ roles: ["acs.admin"] }, "bench-admin")}`;
  const endUser = `Bearer ${await sign({}, "bench-user")}`;

  // 1-4: throughput and latency, interleaved rounds; cache misses against a slow ACS.
  const servers = await startServers(common);
  const scenarios = await prepareScenarios(servers, admin, endUser);
  const gatewayRssAfterRounds = await runThroughput(redis, servers, scenarios, report);
  // 5: the refresh workload.
  await runRefreshWorkload(common, admin, report);
  // 6: memory.
  const { slowAcs } = servers;
  await runMemory(
    common,
    admin,
    slowAcs,
    scenarios.sampleToken,
    gatewayRssAfterRounds,
    owned,
    report,
  );
  // Where the time goes, and the garbage-collection pauses the p99 is made of.
  await runProfiles(common, redis, slowAcs, scenarios.throughput, report);
  await slowAcs.stop();
} finally {
  for (const child of children) {
    child.kill("SIGKILL");
  }
  await owned.tokenRedis?.stop();
  await redis?.stop();
  await issuer?.close();
}

writeReport(report, started);
