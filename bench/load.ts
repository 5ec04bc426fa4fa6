/**
 * The load generator, forked by scripts/bench.ts into its own process so it never shares an event
 * loop (or, on 2 cores, a core) with the server it measures. It receives one `LoadJob` over IPC,
 * runs autocannon, and answers one `LoadResult`.
 */
import autocannon from "autocannon";

export interface LoadJob {
  url: string;
  connections: number;
  /** Seconds to run; ignored when `amount` is set. */
  seconds: number;
  /** Exactly this many requests instead of a duration. */
  amount?: number;
  headers: Record<string, string>;
  /**
   * The request body. `__I__` becomes the request's sequence number (from `offset`), `__U__` one of
   * `userIds` (round robin) and `__M__` a lifetime from 60 to 1440 minutes that changes each time
   * the user list wraps: together, a new cache entry for every request.
   */
  body: string;
  userIds?: string[];
  offset?: number;
}

export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  /** Milliseconds, from every response's own timing (autocannon's histogram rounds to 1 ms). */
  p50: number;
  p99: number;
  /** Non-2xx answers, and 2xx answers carrying GraphQL `errors`. */
  failures: number;
  /** Socket errors and timeouts. */
  errors: number;
  /** The first failing body, for the report (never holds a token: failures carry none). */
  sample?: string;
  /** CPU time this load generator used during the run (user + system), ms. */
  cpuMs: number;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length === 0
    ? 0
    : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

export async function runLoad(job: LoadJob): Promise<LoadResult> {
  let sequence = job.offset ?? 0;
  const users = job.userIds ?? [];
  // Exactly the placeholders: a GraphQL text holds `__typename` (the client's documents do), and
  // a body taken for varying costs this process a new request object each time, CPU taken from
  // the server it measures on a 2-core machine.
  const varying = /__[IUM]__/.test(job.body);
  const next = () => {
    const i = sequence++;
    const user = users.length > 0 ? users[i % users.length]! : "";
    const minutes = users.length > 0 ? 60 + (Math.floor(i / users.length) % 1381) : 60;
    return job.body
      .replaceAll("__I__", String(i))
      .replaceAll("__U__", user)
      .replaceAll("__M__", String(minutes));
  };
  const latencies: number[] = [];
  let failures = 0;
  let sample: string | undefined;
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const options: autocannon.Options = {
    url: job.url,
    method: "POST",
    connections: job.connections,
    ...(job.amount ? { amount: job.amount } : { duration: job.seconds }),
    timeout: 30,
    headers: { "content-type": "application/json", ...job.headers },
    requests: [
      {
        method: "POST",
        ...(varying
          ? { setupRequest: (request: autocannon.Request) => ({ ...request, body: next() }) }
          : { body: job.body }),
        onResponse: (status: number, body: string) => {
          if (status < 200 || status > 299 || body.includes('"errors"')) {
            failures++;
            sample ??= `${status} ${body.slice(0, 300)}`;
          }
        },
      },
    ],
  };
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(options, (error, done) => (error ? reject(error) : resolve(done)));
    instance.on("response", (_client, _status, _bytes, responseTime) => {
      latencies.push(responseTime);
    });
  });
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const sorted = Float64Array.from(latencies).sort();
  return {
    requests: sorted.length,
    seconds,
    rps: sorted.length / seconds,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    failures,
    errors: result.errors + result.timeouts,
    cpuMs: (cpu.user + cpu.system) / 1000,
    ...(sample === undefined ? {} : { sample }),
  };
}

if (process.send) {
  process.once("message", (job: LoadJob) => {
    runLoad(job).then(
      (result) => process.send!({ result }, () => process.exit(0)),
      (error: unknown) =>
        process.send!({ error: error instanceof Error ? error.message : String(error) }, () =>
          process.exit(1),
        ),
    );
  });
}
