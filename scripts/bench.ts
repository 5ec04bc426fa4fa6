/**
 * `npm run bench`: throughput and latency of the gateway's hot paths over real HTTP on loopback,
 * with the embedded emulator upstream. Prints a table and writes BENCHMARKS.md.
 *
 * BENCH_SECONDS (default 5) per scenario, BENCH_CONCURRENCY (default 32).
 */
import "reflect-metadata";
import { writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
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

async function load(
  name: string,
  app: App,
  url: string,
  nextBody: (i: number) => string,
  seconds = SECONDS,
): Promise<Row> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const target = new URL(url);
  const latencies: number[] = [];
  let errors = 0;
  let i = 0;
  const upstreamBefore = Object.values(app.emulator!.counters).reduce((a, b) => a + b, 0);
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        const text = await post(agent, target, nextBody(i++));
        latencies.push(performance.now() - t0);
        if (text.includes('"errors"')) {
          errors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
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

const ISSUE =
  "mutation ($u: ID!, $m: Int) { issueToken(userId: $u, scopes: [VOIP, CHAT], expiresInMinutes: $m) { token expiresOn } }";

async function scenarios(label: string, env: Record<string, string>): Promise<Row[]> {
  const app = await createApp(
    loadConfig({
      LOG_LEVEL: "silent",
      HOST: "127.0.0.1",
      RATE_LIMIT_TOKENS_PER_MINUTE: "1000000",
      ...env,
    }),
  );
  try {
    const url = await app.listen(0);
    const created = await post(
      new Agent(),
      new URL(url),
      JSON.stringify({ query: "mutation { createUser { id } }" }),
    );
    const userId = (JSON.parse(created) as { data: { createUser: { id: string } } }).data.createUser
      .id;
    const hot = JSON.stringify({ query: ISSUE, variables: { u: userId, m: 60 } });
    // Warm: the first call mints, every later one is a cache hit.
    await post(new Agent(), new URL(url), hot);
    await load(`warm-up`, app, url, () => hot, 1);
    const rows = [await load(`issueToken, cache hit (${label})`, app, url, () => hot)];
    // Misses: each request a new (user, lifetime) entry, so every one goes upstream.
    const users: string[] = [];
    for (let n = 0; n < 64; n++) {
      const text = await post(
        new Agent(),
        new URL(url),
        JSON.stringify({ query: "mutation { createUser { id } }" }),
      );
      users.push((JSON.parse(text) as { data: { createUser: { id: string } } }).data.createUser.id);
    }
    rows.push(
      await load(`issueToken, cache miss -> emulator (${label})`, app, url, (i) =>
        JSON.stringify({
          query: ISSUE,
          variables: { u: users[i % 64], m: 60 + (Math.floor(i / 64) % 1381) },
        }),
      ),
    );
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
  const app = await createApp(loadConfig({ LOG_LEVEL: "silent", HOST: "127.0.0.1" }));
  try {
    const url = await app.listen(0);
    const body = JSON.stringify({ query: "mutation { createUser { id } }" });
    rows.push(await load("createUser -> emulator", app, url, () => body));
  } finally {
    await app.close();
  }
} finally {
  await redis?.stop();
}

const header =
  "| scenario | requests | req/s | p50 ms | p99 ms | upstream calls | errors |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |";
const table = [
  header,
  ...rows.map(
    (r) =>
      `| ${r.scenario} | ${r.requests} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.upstream} | ${r.errors} |`,
  ),
].join("\n");
const machine = `Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model.trim() ?? "cpu"}, ${CONCURRENCY} concurrent keep-alive connections, ${SECONDS} s per scenario, client and server in one process on loopback.`;
console.log(table);
console.log(machine);
writeFileSync(
  fileURLToPath(new URL("../BENCHMARKS.md", import.meta.url)),
  `# Benchmarks\n\nWritten by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}. ${machine}\nThe upstream is the embedded emulator (no network latency), so miss rows show the gateway's and SDK's own cost, not ACS's.\n\n${table}\n`,
);
