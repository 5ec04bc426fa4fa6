/**
 * The servers of the throughput and cache-miss runs, and the scenarios run against them: the rows
 * of the throughput table (the ceiling, the floor, the gateway's requests) and the cache misses.
 */
import type { LoadJob } from "../../bench/load.js";
import {
  operationsByName,
  TRUSTED_DOCUMENTS_MANIFEST,
} from "../../src/server/persisted-documents.js";
import { CONNECTIONS, LATENCY_MS, log, P } from "./params.js";
import {
  graphql,
  pool,
  startChild,
  startEmulatorProcess,
  startGateway,
  type Child,
  type Common,
  type Emulator,
  type Gateway,
} from "./runners.js";

export interface Scenario {
  name: string;
  job: Omit<LoadJob, "seconds">;
  seconds: number;
  /** The measured server's process (its CPU time is read around each run). */
  pid: number;
  miss?: boolean;
}
// Rows of the throughput table, in order; named so the targets below cannot point at the wrong one.
export const ROW = {
  ceiling: 0,
  floor: 1,
  typename: 2,
  hit: 3,
  myHit: 4,
  adHoc: 5,
  memoryHit: 6,
} as const;
/** A throughput row: one server, 50 connections, one body; `authorization` for the gateway. */
const row = (
  name: string,
  server: { pid: number; url: string },
  authorization: string | undefined,
  body: string,
): Scenario => ({
  name,
  seconds: P.seconds,
  pid: server.pid,
  job: {
    url: server.url,
    connections: CONNECTIONS,
    headers: authorization === undefined ? {} : { authorization },
    body,
  },
});

export interface Servers {
  ceiling: Child;
  floorServer: Child;
  /** The ACS emulator answering after LATENCY_MS; the later measures use it too. */
  slowAcs: Emulator;
  gateway: Gateway;
  memoryGateway: Gateway;
}

export async function startServers(common: Common): Promise<Servers> {
  log("starting the ceiling, an emulator (100 ms latency) and the gateway");
  const ceiling = await startChild(
    "bench/ceiling-server.js",
    { NODE_ENV: "production" },
    /LISTENING (\S+)\n/,
  );
  // The same ceiling making one Redis round trip per request, as a cache hit must.
  const floorServer = await startChild(
    "bench/ceiling-server.js",
    { NODE_ENV: "production", CEILING_REDIS_URL: common.redisUrl },
    /LISTENING (\S+)\n/,
  );
  const slowAcs = await startEmulatorProcess({ ACS_EMULATOR_LATENCY_MS: String(LATENCY_MS) });
  const gateway = await startGateway(common, slowAcs.connectionString);
  // The same gateway with its in-process cache (no REDIS_URL: one instance only, docs/caching.md):
  // what a hit costs without the Redis round trip the shared cache must make.
  const memoryGateway = await startGateway({ ...common, redisUrl: "" }, slowAcs.connectionString);
  return { ceiling, floorServer, slowAcs, gateway, memoryGateway };
}

export interface Scenarios {
  throughput: Scenario[];
  misses: Scenario[];
  /** A token the gateway issued, the size of the entries the memory measure writes. */
  sampleToken: string;
  missUsers: string[];
}

/** Creates the users the scenarios ask for, warms the cache for the hits, and lists the runs. */
export async function prepareScenarios(
  { ceiling, floorServer, gateway, memoryGateway }: Servers,
  admin: string,
  endUser: string,
): Promise<Scenarios> {
  const ceilingUrl = ceiling.ready[1]!;

  const created = await graphql(gateway.url, admin, "mutation { createUser { id } }");
  const userId = (created.createUser as { id: string }).id;
  // The client package's own documents, byte for byte, as createTokenRefresher sends them; and an
  // ad-hoc text for the same field, as an app with its own documents sends it. Both take the one
  // pipeline.
  const clientDocuments = operationsByName();
  const issueTokenText = clientDocuments.get("IssueToken")!;
  const issueMyTokenText = clientDocuments.get("IssueMyToken")!;
  const hitVariables = { userId, scopes: ["VOIP", "CHAT"], expiresInMinutes: 60 };
  /** The body createGatewayClient (and so createTokenRefresher) sends by default. */
  const clientBody = (name: string, variables: Record<string, unknown>) =>
    JSON.stringify({
      operationName: name,
      variables,
      extensions: {
        persistedQuery: {
          version: 1,
          sha256Hash: TRUSTED_DOCUMENTS_MANIFEST.operations.find((o) => o.name === name)!.id,
        },
      },
      query: clientDocuments.get(name)!,
    });
  const hitQuery =
    "mutation ($u: ID!) { issueToken(userId: $u, scopes: [VOIP, CHAT], expiresInMinutes: 60) { token expiresOn } }";
  const first = await graphql(gateway.url, admin, issueTokenText, hitVariables);
  const sampleToken = (first.issueToken as { token: string }).token;
  await graphql(gateway.url, endUser, issueMyTokenText, { scopes: ["CHAT"] });
  const missUsers = await pool(Array.from({ length: 64 }), 8, async () => {
    const data = await graphql(gateway.url, admin, "mutation { createUser { id } }");
    return (data.createUser as { id: string }).id;
  });

  const hello = '{"query":"{ hello }"}';
  const throughput: Scenario[] = [
    row(
      "ceiling: bare Apollo Server 5 + Fastify `{ hello }`",
      { pid: ceiling.process.pid!, url: ceilingUrl },
      undefined,
      hello,
    ),
    row(
      "floor: the same ceiling making one Redis `MGET` per request",
      { pid: floorServer.process.pid!, url: floorServer.ready[1]! },
      undefined,
      hello,
    ),
    row("gateway `{ __typename }` (admin JWT)", gateway, admin, '{"query":"{ __typename }"}'),
    row(
      "gateway `issueToken`, cache hit (admin JWT, the client's document)",
      gateway,
      admin,
      clientBody("IssueToken", hitVariables),
    ),
    row(
      "gateway `issueMyToken`, cache hit (end-user JWT, the client's document)",
      gateway,
      endUser,
      clientBody("IssueMyToken", { scopes: ["CHAT"] }),
    ),
    row(
      "gateway `issueToken`, cache hit (admin JWT, an ad-hoc document)",
      gateway,
      admin,
      JSON.stringify({ query: hitQuery, variables: { u: userId } }),
    ),
    row(
      "gateway `issueToken`, cache hit in the in-process cache (no Redis: a single instance)",
      memoryGateway,
      admin,
      clientBody("IssueToken", hitVariables),
    ),
  ];
  const missBody = clientBody("IssueToken", {
    userId: "__U__",
    scopes: ["CHAT"],
    expiresInMinutes: 0,
  }).replace('"expiresInMinutes":0', '"expiresInMinutes":__M__');
  const misses: Scenario[] = [1, CONNECTIONS].map((connections) => ({
    name: `gateway \`issueToken\`, cache miss, ACS +${LATENCY_MS} ms, ${connections} connection${connections > 1 ? "s" : ""}`,
    seconds: P.missSeconds,
    pid: gateway.pid,
    miss: true,
    job: {
      url: gateway.url,
      connections,
      headers: { authorization: admin },
      body: missBody,
      userIds: missUsers,
    },
  }));
  return { throughput, misses, sampleToken, missUsers };
}
