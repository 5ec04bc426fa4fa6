/**
 * `npm run bench`: throughput and latency of the gateway's hot paths over real HTTP on loopback,
 * with the embedded emulator upstream. Prints a table and writes BENCHMARKS.md.
 *
 * BENCH_SECONDS (default 5) per scenario, BENCH_CONCURRENCY (default 32).
 */
import "reflect-metadata";
import { writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { Worker } from "node:worker_threads";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { createApp, type App } from "../src/app.js";
import { loadConfig } from "../src/config.js";
import { startRedis, type RedisProcess } from "../test/helpers/redis.js";

const SECONDS = Number(process.env.BENCH_SECONDS || 5);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY || 32);

interface Row {
  scenario: string;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  upstream: number;
  errors: number;
}

function post(agent: Agent, url: URL, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        let data = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (data += chunk));
        res.on("end", () => resolve(data));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * The load client runs in a worker thread (plain JavaScript, its own event loop), so it does not
 * steal the gateway's event loop: on 2 cores, one serves and one loads.
 */
const CLIENT = `
const { parentPort, workerData } = require("node:worker_threads");
const { Agent, request } = require("node:http");
const { url, seconds, concurrency, mode, userIds, userId } = workerData;
const query = "mutation ($u: ID!, $m: Int) { issueToken(userId: $u, scopes: [VOIP, CHAT], expiresInMinutes: $m) { token expiresOn } }";
const bodyFor = (i) =>
  mode === "createUser"
    ? '{"query":"mutation { createUser { id } }"}'
    : mode === "hit"
      ? JSON.stringify({ query, variables: { u: userId, m: 60 } })
      : JSON.stringify({ query, variables: { u: userIds[i % userIds.length], m: 60 + (Math.floor(i / userIds.length) % 1381) } });
const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
const target = new URL(url);
function post(body) {
  return new Promise((resolve, reject) => {
    const req = request(target, { method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
      let data = ""; res.setEncoding("utf8"); res.on("data", (c) => (data += c)); res.on("end", () => resolve(data));
    });
    req.on("error", reject); req.end(body);
  });
}
(async () => {
  const latencies = []; let errors = 0; let i = 0;
  const deadline = performance.now() + seconds * 1000; const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      const text = await post(bodyFor(i++));
      latencies.push(performance.now() - t0);
      if (text.includes('"errors"')) errors++;
    }
  }));
  agent.destroy();
  parentPort.postMessage({ latencies, errors, elapsed: (performance.now() - started) / 1000 });
})();
`;

async function load(
  name: string,
  app: App,
  url: string,
  work: { mode: "hit" | "miss" | "createUser"; userId?: string; userIds?: string[] },
  seconds = SECONDS,
): Promise<Row> {
  const upstreamBefore = Object.values(app.emulator!.counters).reduce((a, b) => a + b, 0);
  const { latencies, errors, elapsed } = await new Promise<{
    latencies: number[];
    errors: number;
    elapsed: number;
  }>((resolve, reject) => {
    const worker = new Worker(CLIENT, {
      eval: true,
      workerData: { url, seconds, concurrency: CONCURRENCY, ...work },
    });
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0;
  return {
    scenario: name,
    requests: latencies.length,
    rps: latencies.length / elapsed,
    p50: pct(0.5),
    p99: pct(0.99),
    upstream: Object.values(app.emulator!.counters).reduce((a, b) => a + b, 0) - upstreamBefore,
    errors,
  };
}

async function createUsers(url: string, count: number): Promise<string[]> {
  const agent = new Agent({ keepAlive: true });
  const ids: string[] = [];
  for (let n = 0; n < count; n++) {
    const text = await post(agent, new URL(url), '{"query":"mutation { createUser { id } }"}');
    ids.push((JSON.parse(text) as { data: { createUser: { id: string } } }).data.createUser.id);
  }
  agent.destroy();
  return ids;
}

async function scenarios(
  label: string,
  env: Record<string, string>,
  emulator: { latencyMs?: number } = {},
): Promise<Row[]> {
  const app = await createApp(
    loadConfig({
      LOG_LEVEL: "silent",
      HOST: "127.0.0.1",
      RATE_LIMIT_TOKENS_PER_MINUTE: "1000000",
      ...env,
    }),
    { emulator },
  );
  try {
    const url = await app.listen(0);
    const [userId] = await createUsers(url, 1);
    // Warm-up: the first call mints, every later one is a cache hit; the JIT warms too.
    await load("warm-up", app, url, { mode: "hit", userId }, 1);
    const rows = [
      await load(`issueToken, cache hit (${label})`, app, url, { mode: "hit", userId }),
    ];
    // Misses: every request a new (user, lifetime) entry, so every one goes upstream.
    const userIds = await createUsers(url, 64);
    rows.push(await load(`issueToken, cache miss (${label})`, app, url, { mode: "miss", userIds }));
    return rows;
  } finally {
    await app.close();
  }
}

let redis: RedisProcess | undefined;
const rows: Row[] = [];
try {
  rows.push(...(await scenarios("memory cache", {})));
  redis = await startRedis();
  rows.push(...(await scenarios("Redis cache", { REDIS_URL: redis.url })));
  // ACS answers in tens of milliseconds; the emulator can add that, to show what the cache saves.
  rows.push(
    ...(await scenarios(
      "Redis cache, ACS latency 50 ms",
      { REDIS_URL: redis.url },
      { latencyMs: 50 },
    )),
  );
  const app = await createApp(loadConfig({ LOG_LEVEL: "silent", HOST: "127.0.0.1" }));
  try {
    rows.push(
      await load("createUser (never cached)", app, await app.listen(0), { mode: "createUser" }),
    );
  } finally {
    await app.close();
  }
} finally {
  await redis?.stop();
}

const header =
  "| scenario | requests | req/s | p50 ms | p99 ms | ACS calls | errors |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |";
const table = [
  header,
  ...rows.map(
    (r) =>
      `| ${r.scenario} | ${r.requests} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.upstream} | ${r.errors} |`,
  ),
].join("\n");
const machine = `Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model.trim() ?? "cpu"}; ${CONCURRENCY} concurrent keep-alive connections from a worker thread; ${SECONDS} s per scenario; gateway, emulator and Redis on this machine (loopback).`;
console.log(table);
console.log(machine);
writeFileSync(
  fileURLToPath(new URL("../BENCHMARKS.md", import.meta.url)),
  `# Benchmarks\n\nWritten by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}. ${machine}\n\nThe upstream is the embedded emulator: "cache miss" rows show the gateway's, the SDK's and the emulator's own cost (RS256 signing), without network latency unless the row says so. "ACS calls" counts the calls the emulator answered.\n\n${table}\n`,
);
