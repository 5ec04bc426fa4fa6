/**
 * The refresh workload (measure 5): two gateways on one Redis against an emulator enforcing the
 * ACS limits, and the same request sequence straight to ACS with the SDK, no cache.
 */
import { CommunicationIdentityClient } from "@azure/communication-identity";
import type { RefreshResult } from "../../bench/refresh.js";
import { CONNECTIONS, log, P } from "./params.js";
import { f1, f2, type Report } from "./report.js";
import {
  graphql,
  pool,
  refresh,
  startEmulatorProcess,
  startGateway,
  type Common,
} from "./runners.js";

export async function runRefreshWorkload(
  common: Common,
  admin: string,
  { sections, targets }: Report,
): Promise<void> {
  log(
    `refresh workload: ${P.refreshUsers} users x 3 devices, ${P.refreshRequests} requests, Zipf(1.1), throttle "acs"`,
  );
  const throttled = await startEmulatorProcess({ ACS_EMULATOR_THROTTLE: "acs" });
  // Their warnings and errors (e.g. Redis timeouts, the cache breaker) are kept to explain calls
  // above one per entry.
  const warning = /"level":(40|50)/;
  const pair = [
    await startGateway(common, throttled.connectionString, [], warning),
    await startGateway(common, throttled.connectionString, [], warning),
  ];
  const refreshUsers = await pool(Array.from({ length: P.refreshUsers }), 8, async (_, i) => {
    const data = await graphql(pair[i % 2]!.url, admin, "mutation { createUser { id } }");
    return (data.createUser as { id: string }).id;
  });
  const before = await throttled.counters();
  const viaGateway = await refresh({
    mode: "gateway",
    urls: pair.map((g) => g.url),
    authorization: admin,
    userIds: refreshUsers,
    devices: 3,
    requests: P.refreshRequests,
    connections: CONNECTIONS,
  });
  const after = await throttled.counters();
  const gatewayCalls = after.issueAccessToken! - before.issueAccessToken!;
  const cacheLookups: Record<string, number> = {};
  for (const g of pair) {
    const text = await (await fetch(new URL("/metrics", g.url))).text();
    for (const [, result, n] of text.matchAll(
      /^acsgw_token_cache_requests_total\{result="(\w+)"\} (\d+)/gm,
    )) {
      cacheLookups[result!] = (cacheLookups[result!] ?? 0) + Number(n);
    }
  }
  const warnings = new Map<string, number>();
  for (const line of pair.flatMap((g) => g.lines)) {
    const msg = /"msg":"([^"]*)"/.exec(line)?.[1] ?? line.slice(0, 80);
    warnings.set(msg, (warnings.get(msg) ?? 0) + 1);
  }
  await Promise.all(pair.map((g) => g.stop()));
  await throttled.stop();

  const bare = await startEmulatorProcess({ ACS_EMULATOR_THROTTLE: "acs" });
  const sdk = new CommunicationIdentityClient(bare.connectionString, {
    retryOptions: { maxRetries: 0 },
    allowInsecureConnection: true,
  });
  const bareUsers = await pool(Array.from({ length: P.refreshUsers }), 8, async () => {
    return (await sdk.createUser()).communicationUserId;
  });
  const bareBefore = await bare.counters();
  const direct = await refresh({
    mode: "direct",
    connectionString: bare.connectionString,
    userIds: bareUsers,
    devices: 3,
    requests: P.refreshRequests,
    connections: CONNECTIONS,
  });
  const directCalls = (await bare.counters()).issueAccessToken! - bareBefore.issueAccessToken!;
  await bare.stop();
  const refreshRow = (name: string, r: RefreshResult, calls: number) =>
    `| ${name} | ${r.requests} | ${r.distinctEntries} | ${calls} | ${f2(calls / r.distinctEntries)} | ${r.throttled} | ${r.otherErrors} | ${f1(r.seconds)} | ${f2(r.p50)} | ${f2(r.p99)} |`;
  sections.push(
    [
      "## Refresh workload: two gateways on one Redis, ACS limits enforced",
      "",
      `${P.refreshUsers} users with 3 devices each (two ask VoIP + chat for 60 min, one chat for 1440 min), users drawn Zipf(1.1), ${P.refreshRequests} requests at ${CONNECTIONS} connections, spread round robin over two gateway processes sharing one Redis. The emulator enforces the published ACS Identity limits (1000 token issues per 30 s, 429 with Retry-After). The no-cache baseline is the same request sequence sent by each device straight to ACS with the SDK (retries off, so every 429 is seen), against a fresh emulator with its own limits.`,
      "",
      "| path | requests | distinct (user, scopes, lifetime) | ACS token calls answered | calls per distinct | 429s seen by clients | other errors | s | p50 ms | p99 ms |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      refreshRow("through the gateways (cache)", viaGateway, gatewayCalls),
      refreshRow("SDK direct, no cache", direct, directCalls),
      "",
      `The gateways' cache lookups (\`acsgw_token_cache_requests_total\`, both instances): ${
        Object.entries(cacheLookups)
          .map(([result, n]) => `${n} ${result}`)
          .join(", ") || "none reported"
      }. Their warnings and errors during the workload: ${
        warnings.size === 0
          ? "none"
          : [...warnings.entries()]
              .sort((a, b) => b[1] - a[1])
              .slice(0, 5)
              .map(([msg, n]) => `${n} x "${msg}"`)
              .join("; ")
      }.`,
      ...(viaGateway.sample
        ? ["", `First unexpected gateway answer: \`${viaGateway.sample}\``]
        : []),
    ].join("\n"),
  );
  targets.push({
    target: "upstream calls = distinct entries in the refresh workload",
    value: `${gatewayCalls} calls for ${viaGateway.distinctEntries} entries, ${viaGateway.throttled} 429s`,
    met: gatewayCalls === viaGateway.distinctEntries && viaGateway.throttled === 0,
  });
}
