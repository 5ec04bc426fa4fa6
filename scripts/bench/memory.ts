/**
 * Memory (measure 6): Redis bytes per cached token, written through the gateway's own cache
 * module into a Redis of its own, and the gateway's RSS and live heap as distinct query texts
 * arrive.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTokenCache } from "../../src/cache/index.js";
import { loadConfig, parseConnectionString } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { CONNECTIONS, log, P } from "./params.js";
import { f0, f1, f2, type Report } from "./report.js";
import { load, pool, rssMb, startGateway, type Common, type Emulator } from "./runners.js";
import { startRedis, type RedisProcess } from "./services.js";

const silent = createLogger({ level: "silent" });

export async function runMemory(
  common: Common,
  admin: string,
  slowAcs: Emulator,
  sampleToken: string,
  gatewayRssAfterRounds: number,
  /** Where the token Redis is kept, for the caller to stop it (also when a measure throws). */
  owned: { tokenRedis?: RedisProcess },
  { sections, targets }: Report,
): Promise<void> {
  log(`Redis bytes per token: ${P.tokens} tokens through the gateway's own cache module`);
  const tokenRedis = await startRedis();
  owned.tokenRedis = tokenRedis;
  const acs = parseConnectionString(slowAcs.connectionString);
  if (typeof acs === "string") {
    throw new Error(acs);
  }
  let lookups = { hit: 0, miss: 0 };
  const cache = createTokenCache(loadConfig({ REDIS_URL: tokenRedis.url, LOG_LEVEL: "silent" }), {
    logger: silent,
    acs,
    onLookup: (result) => lookups[result]++,
  });
  const plain = tokenRedis.client();
  const usedMemory = async () =>
    Number(/used_memory:(\d+)/.exec(await plain.info("memory"))?.[1] ?? NaN);
  // The cache's own connection must be up before the entries are written: while it is not, every
  // write is skipped (the token comes straight from ACS) and, with no I/O to wait on, the loop
  // below would finish before it connects, measuring nothing (0 of 100,000 stored in one run).
  const readyBy = Date.now() + 10_000;
  while (!(await cache.isReady())) {
    if (Date.now() > readyBy) {
      throw new Error("the token cache's Redis connection did not become ready in 10 s");
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const memoryBefore = await usedMemory();
  const expiresOn = Date.now() + 24 * 3600_000;
  // Four entries per user (two scope sets x two lifetimes), ids in the real ACS shape.
  const resourceId = "5c6fe286-6348-4310-9cd1-6980234eb6c2";
  const entryOf = (i: number) => ({
    userId: `8:acs:${resourceId}_${String(Math.floor(i / 4)).padStart(8, "0")}-0000-4000-8000-000000000000`,
    scopes: i % 2 ? (["chat"] as const) : (["chat", "voip"] as const),
    expiresInMinutes: i % 4 < 2 ? 60 : 1440,
  });
  const indexes = Array.from({ length: P.tokens }, (_, i) => i);
  // Moderate concurrency: the cache skips Redis when commands time out (250 ms), and a busy
  // machine must not turn this into a measure of what was skipped.
  await pool(indexes, 16, (i) =>
    cache.getOrMint(entryOf(i), async () => ({ token: sampleToken, expiresOn })),
  );
  const memoryAfter = await usedMemory();
  const keys = await plain.dbsize();
  const [, sampleKeys] = await plain.scan("0", "COUNT", 200);
  const usages = await Promise.all(sampleKeys.map((k) => plain.memory("USAGE", k)));
  const perKey = usages.reduce<number>((a, b) => a + Number(b ?? 0), 0) / usages.length;
  // What was really stored: a second read of every entry is a hit exactly for those.
  lookups = { hit: 0, miss: 0 };
  await pool(indexes, 16, (i) =>
    cache.getOrMint(entryOf(i), async () => ({ token: sampleToken, expiresOn })),
  );
  const stored = lookups.hit;
  await cache.close();
  const perToken = (memoryAfter - memoryBefore) / stored;

  log(`gateway RSS: ${P.queries} distinct query texts`);
  // --trace-gc: the heap each full collection leaves is what the process really keeps alive; RSS
  // also holds garbage V8 has not collected yet and pages it has not given back.
  // Its directory folder made beforehand, by a gateway started and stopped on it: a new folder's
  // initdb holds a few hundred MB of PGlite memory that is given back later, during the
  // measurement, which then showed as a growth of -327 MB.
  const directory = mkdtempSync(join(tmpdir(), "acsgw-bench-directory-"));
  await (await startGateway(common, slowAcs.connectionString, [], undefined, directory)).stop();
  const fresh = await startGateway(
    common,
    slowAcs.connectionString,
    ["--trace-gc"],
    /Mark-Compact/,
    directory,
  );
  const liveHeap = () => {
    const last = fresh.lines.at(-1);
    const mb = last ? /-> ([\d.]+) \(/.exec(last)?.[1] : undefined;
    return mb === undefined ? "n/a" : `${mb} MB`;
  };
  // About the size of a real operation (20 lexer tokens), and answered without Redis (even `me`
  // reads the mapping store), which a loaded machine could make time out.
  const meQuery = (suffix: string) =>
    JSON.stringify({
      query: `query Q${suffix} { a: __typename b: __typename c: __typename d: __typename e: __typename }`,
    });
  await load({
    url: fresh.url,
    connections: CONNECTIONS,
    seconds: 0,
    amount: 5000,
    headers: { authorization: admin },
    body: meQuery(""),
  });
  const rssBefore = rssMb(fresh.pid);
  const heapBefore = liveHeap();
  const collectionsBefore = fresh.lines.length;
  const distinctRun = await load({
    url: fresh.url,
    connections: CONNECTIONS,
    seconds: 0,
    amount: P.queries,
    headers: { authorization: admin },
    body: meQuery("__I__"),
  });
  const rssAfter = rssMb(fresh.pid);
  if (distinctRun.failures > 0) {
    log(`distinct query texts: ${distinctRun.failures} failed, e.g. ${distinctRun.sample}`);
  }
  const heapAfter = fresh.lines.length > collectionsBefore ? liveHeap() : "n/a (no full GC ran)";
  await fresh.stop();
  sections.push(
    [
      "## Memory",
      "",
      "| measure | value |",
      "| --- | ---: |",
      `| Redis \`used_memory\` growth per cached token (${stored} of ${P.tokens} tokens stored, ${sampleToken.length} characters each, 4 per user) | ${f0(perToken)} B |`,
      `| Redis keys per cached token | ${f2(keys / stored)} |`,
      `| \`MEMORY USAGE\` per key (mean of ${usages.length} sampled) | ${f0(perKey)} B |`,
      `| gateway RSS after 5,000 requests of one query | ${f1(rssBefore)} MB |`,
      `| gateway RSS after ${P.queries} more, each a distinct query text (${distinctRun.failures} failed) | ${f1(rssAfter)} MB |`,
      `| growth | ${f1(rssAfter - rssBefore)} MB |`,
      `| live heap after the last full GC: before / after the distinct texts | ${heapBefore} / ${heapAfter} |`,
      `| gateway RSS at the end of the throughput rounds | ${f1(gatewayRssAfterRounds)} MB |`,
    ].join("\n"),
  );
  targets.push(
    {
      target: "< 2 KB of Redis per cached token",
      // A measure of nothing is not a pass.
      value: stored > 0 ? `${f0(perToken)} B` : "not measured: no entry was stored",
      met: stored > 0 && perToken < 2048,
    },
    {
      target: `RSS growth < 50 MB after ${P.queries} distinct query texts`,
      value: `${f1(rssAfter - rssBefore)} MB`,
      met: rssAfter - rssBefore < 50,
    },
  );
}
