/**
 * The refresh workload, forked by scripts/bench.ts into its own process: many users with several
 * devices each ask for tokens, users drawn from a Zipf distribution (a few very active users, a
 * long tail). Either through the gateway instances (round robin) or, as the no-cache baseline,
 * straight to ACS with the SDK the way each device would without a gateway (retries off, like the
 * gateway's own client, so every 429 is seen). With one connection, the direct mode is also the
 * floor the gateway's cache-miss latency is compared with.
 */
import { Agent, request } from "node:http";
import { CommunicationIdentityClient, type TokenScope } from "@azure/communication-identity";

export interface RefreshJob {
  mode: "gateway" | "direct";
  /** gateway: the GraphQL URLs of the instances. */
  urls?: string[];
  /** gateway: the admin's `Authorization` header. */
  authorization?: string;
  /** direct: the ACS connection string. */
  connectionString?: string;
  /** direct and gateway: ACS user ids, most active first (Zipf rank order). */
  userIds: string[];
  devices: number;
  requests: number;
  connections: number;
  /** Zipf exponent. @default 1.1 */
  exponent?: number;
  seed?: number;
}

export interface RefreshResult {
  requests: number;
  ok: number;
  /** Answers that were ACS 429s: `UPSTREAM_THROTTLED` through the gateway, RestError 429 direct. */
  throttled: number;
  otherErrors: number;
  /** Distinct (user, scopes, lifetime) the requests asked for. */
  distinctEntries: number;
  seconds: number;
  p50: number;
  p99: number;
  sample?: string;
}

/** A device's app decides what it asks for: phone and desktop VoIP and chat for an hour, web chat for a day. */
const DEVICE_REQUESTS: { scopes: TokenScope[]; minutes: number }[] = [
  { scopes: ["voip", "chat"], minutes: 60 },
  { scopes: ["voip", "chat"], minutes: 60 },
  { scopes: ["chat"], minutes: 1440 },
];
const GRAPHQL_SCOPES: Record<string, string> = { voip: "VOIP", chat: "CHAT" };

/** Mulberry32: a seeded generator, so every run and both modes ask the same sequence. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Ranks 0..n-1 with probability proportional to 1 / (rank + 1)^s, by inverse CDF. */
function zipf(n: number, s: number, next: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    sum += 1 / Math.pow(k + 1, s);
    cdf[k] = sum;
  }
  return () => {
    const target = next() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < target) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  };
}

function post(agent: Agent, url: URL, body: string, authorization: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "POST",
        agent,
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          authorization,
        },
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

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

export async function runRefresh(job: RefreshJob): Promise<RefreshResult> {
  const next = random(job.seed ?? 42);
  const rank = zipf(job.userIds.length, job.exponent ?? 1.1, next);
  const devices = Math.min(job.devices, DEVICE_REQUESTS.length);
  const plan = Array.from({ length: job.requests }, () => ({
    user: job.userIds[rank()]!,
    ask: DEVICE_REQUESTS[Math.floor(next() * devices)]!,
  }));
  const distinct = new Set(plan.map((p) => `${p.user}|${p.ask.scopes.join()}|${p.ask.minutes}`));

  const client =
    job.mode === "gateway"
      ? undefined
      : new CommunicationIdentityClient(job.connectionString!, {
          retryOptions: { maxRetries: 0 },
          allowInsecureConnection: true,
        });
  const agents = (job.urls ?? []).map(() => new Agent({ keepAlive: true }));
  const urls = (job.urls ?? []).map((u) => new URL(u));
  const query =
    "mutation ($u: ID!, $s: [TokenScope!]!, $m: Int) { issueToken(userId: $u, scopes: $s, expiresInMinutes: $m) { token expiresOn } }";

  let ok = 0;
  let throttled = 0;
  let otherErrors = 0;
  let sample: string | undefined;
  const latencies: number[] = [];
  let cursor = 0;
  const started = performance.now();

  async function one(i: number): Promise<void> {
    const { user, ask } = plan[i]!;
    const t0 = performance.now();
    if (client) {
      try {
        await client.getToken({ communicationUserId: user }, ask.scopes, {
          tokenExpiresInMinutes: ask.minutes,
        });
        ok++;
      } catch (error) {
        if ((error as { statusCode?: number }).statusCode === 429) {
          throttled++;
        } else {
          otherErrors++;
          sample ??= error instanceof Error ? error.message.slice(0, 300) : String(error);
        }
      }
    } else {
      const body = JSON.stringify({
        query,
        variables: { u: user, s: ask.scopes.map((s) => GRAPHQL_SCOPES[s]), m: ask.minutes },
      });
      const text = await post(
        agents[i % agents.length]!,
        urls[i % urls.length]!,
        body,
        job.authorization!,
      );
      if (text.includes('"token"') && !text.includes('"errors"')) {
        ok++;
      } else if (text.includes("UPSTREAM_THROTTLED")) {
        throttled++;
      } else {
        otherErrors++;
        sample ??= text.slice(0, 300);
      }
    }
    latencies.push(performance.now() - t0);
  }

  await Promise.all(
    Array.from({ length: job.connections }, async () => {
      while (cursor < plan.length) {
        await one(cursor++);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  for (const agent of agents) {
    agent.destroy();
  }
  latencies.sort((a, b) => a - b);
  return {
    requests: plan.length,
    ok,
    throttled,
    otherErrors,
    distinctEntries: distinct.size,
    seconds,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    ...(sample === undefined ? {} : { sample }),
  };
}

if (process.send) {
  process.once("message", (job: RefreshJob) => {
    runRefresh(job).then(
      (result) => process.send!({ result }, () => process.exit(0)),
      (error: unknown) =>
        process.send!({ error: error instanceof Error ? error.message : String(error) }, () =>
          process.exit(1),
        ),
    );
  });
}
