/**
 * Where the time goes: the gateway's CPU profile under the cache-hit load, and the garbage-
 * collection pauses of the ceiling, the floor and the gateway under their throughput rows' load.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pauseRow, summariseProfile, type CpuProfile } from "./analysis.js";
import { CONNECTIONS, log, P } from "./params.js";
import { type Report } from "./report.js";
import {
  load,
  PRODUCTION_NODE_FLAGS,
  startChild,
  startGateway,
  type Child,
  type Common,
  type Emulator,
} from "./runners.js";
import { ROW, type Scenario } from "./scenarios.js";
import type { RedisProcess } from "./services.js";

export async function runProfiles(
  common: Common,
  redis: RedisProcess,
  slowAcs: Emulator,
  throughput: Scenario[],
  { sections }: Report,
): Promise<void> {
  log(`profiling the gateway under the cache-hit load (${P.profileSeconds} s, --cpu-prof)`);
  const profileDir = mkdtempSync(join(tmpdir(), "acsgw-prof-"));
  const profiled = await startGateway(common, slowAcs.connectionString, [
    "--cpu-prof",
    `--cpu-prof-dir=${profileDir}`,
  ]);
  // The ad-hoc document: what an app with its own documents sends, through the one pipeline.
  const hitJob = throughput[ROW.adHoc]!.job;
  await load({ ...hitJob, url: profiled.url, seconds: P.warmSeconds });
  const profiledFrom = performance.now();
  await load({ ...hitJob, url: profiled.url, seconds: P.profileSeconds });
  await profiled.stop();
  const profiledMs = performance.now() - profiledFrom;
  const file = readdirSync(profileDir).find((f) => f.endsWith(".cpuprofile"));
  sections.push(
    [
      "## Where the time goes (cache-hit `issueToken`, an ad-hoc document)",
      "",
      file
        ? summariseProfile(
            JSON.parse(readFileSync(join(profileDir, file), "utf8")) as CpuProfile,
            profiledMs,
          )
        : "No profile was written.",
      "",
      `Samples of the measured ${P.profileSeconds} s of load only (start-up and warm-up cut off). \`native\` is V8 builtins and C++ bindings without a script (socket writes, crypto: a \`writeUtf8String\` includes the send system call); \`(garbage collector)\` and \`(program)\` are V8's own. Re-create it with \`node --cpu-prof dist/src/main.js\` under the same load and open the \`.cpuprofile\` in Chrome DevTools for call trees.`,
    ].join("\n"),
  );
  rmSync(profileDir, { recursive: true, force: true });

  // --- young-generation pauses: what the p99 is made of ------------------------------------------
  log(`garbage-collection pauses under load (${P.profileSeconds} s each, --trace-gc-nvp)`);
  const youngPauses: string[] = [];
  const scavenge = / gc=(s|mc) /;
  /** A server started with --trace-gc-nvp, keeping its collections' lines. */
  const ceilingWithGc = async (env: Record<string, string>) => {
    const child = await startChild(
      "bench/ceiling-server.js",
      { NODE_ENV: "production", ...env },
      /LISTENING (\S+)\n/,
      // The gateway's young-generation size too (startGateway adds it), so the rows compare.
      [...PRODUCTION_NODE_FLAGS, "--trace-gc-nvp"],
      scavenge,
    );
    return { ...child, url: child.ready[1]! };
  };
  const gatewayWithGc = (redisUrl: string) =>
    startGateway({ ...common, redisUrl }, slowAcs.connectionString, ["--trace-gc-nvp"], scavenge);
  const measuredForGc: [number, () => Promise<Child & { url: string }>][] = [
    [ROW.ceiling, () => ceilingWithGc({})],
    [ROW.floor, () => ceilingWithGc({ CEILING_REDIS_URL: redis.url })],
    [ROW.hit, () => gatewayWithGc(redis.url)],
    [ROW.memoryHit, () => gatewayWithGc("")],
  ];
  for (const [row, begin] of measuredForGc) {
    const server = await begin();
    const job = { ...throughput[row]!.job, url: server.url };
    await load({ ...job, seconds: P.warmSeconds });
    const from = server.lines.length;
    const result = await load({ ...job, seconds: P.profileSeconds });
    // Only the collections of the measured load, not of the idle moment or the shutdown after it.
    const during = server.lines.slice(from);
    await server.stop();
    youngPauses.push(pauseRow(throughput[row]!.name, during, result));
  }
  sections.push(
    [
      "## Garbage-collection pauses (what the p99 is made of)",
      "",
      `Each server alone under the same load as its throughput row, ${P.profileSeconds} s, with V8's \`--trace-gc-nvp\` and, for all four, the gateway's production flags (\`${PRODUCTION_NODE_FLAGS.join(" ")}\`: the same young-generation size; the throughput rows run the ceiling and the floor with node's defaults). A scavenge (V8's collection of short-lived objects) stops the event loop: every one of the ${CONNECTIONS} requests in flight waits for it, so how often and how long these pauses are shows in the p99. A pause's length grows with what survives it (mostly the state of requests still in flight) and with the C++-backed objects that died since the last one, each of which V8 tracks through a "weak handle" (a \`createHash\` object, a cipher, a socket wrapper). What survives a second scavenge is promoted to the old generation; promoted bytes fill it, and each full mark-compact of it costs the main thread its incremental marking steps and a final pause, several milliseconds each time: the longest stops here, so the ones a p99 sees.`,
      "",
      "| server | req/s | p99 ms | KB allocated per request | scavenges per 1,000 requests | mean pause ms | of which weak handles ms | KB surviving per scavenge | of which promoted KB | mark-compacts per 10,000 requests | main-thread ms each |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      ...youngPauses,
    ].join("\n"),
  );
}
