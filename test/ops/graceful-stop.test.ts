import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../helpers/ports.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

interface Started {
  npm: ChildProcess;
  output: () => string;
  /** Resolves with the first output line that matches. */
  line: (pattern: RegExp) => Promise<string>;
}

const started: Started[] = [];

/** `npm start` in its own process group (so the whole tree can be inspected and cleaned up). */
async function npmStart(env: Record<string, string> = {}): Promise<Started> {
  const npm = spawn("npm", ["start", "--silent"], {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      NODE_ENV: "development",
      // Port 0: a port picked in advance may be taken by another process before the gateway binds.
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      COMMUNICATION_SERVICES_CONNECTION_STRING: "",
      REDIS_URL: "",
      REDIS_CLUSTER_NODES: "",
      OTEL_EXPORTER_OTLP_ENDPOINT: "",
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "",
      OTEL_EXPORTER_OTLP_PROTOCOL: "",
      OTEL_SDK_DISABLED: "",
      ...env,
    },
  });
  let text = "";
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const onData = (chunk: Buffer) => {
    text += chunk.toString("utf8");
    for (const waiter of [...waiters]) {
      const match = text.split("\n").find((line) => waiter.pattern.test(line));
      if (match !== undefined) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(match);
      }
    }
  };
  npm.stdout!.on("data", onData);
  npm.stderr!.on("data", onData);
  const handle: Started = {
    npm,
    output: () => text,
    line: (pattern) =>
      new Promise((resolve, reject) => {
        const found = text.split("\n").find((line) => pattern.test(line));
        if (found !== undefined) {
          resolve(found);
          return;
        }
        waiters.push({ pattern, resolve });
        // "close", not "exit": by then every line npm and node wrote has been read.
        npm.once("close", (code, signal) =>
          reject(
            new Error(
              `npm start ended (${signal ?? `code ${code}`}) before printing ${pattern}:\n${text}`,
            ),
          ),
        );
      }),
  };
  started.push(handle);
  return handle;
}

/** Waits for the start-up line and returns the port the gateway bound. */
async function readyPort(
  gateway: Started,
  pattern = /ready at http:\/\/127\.0\.0\.1:(\d+)\/graphql/,
) {
  const line = await gateway.line(pattern);
  return Number(/ready at http:\/\/127\.0\.0\.1:(\d+)\/graphql/.exec(line)![1]);
}

/** Is any process of the group still there? (signal 0 checks without signalling) */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") {
      return false;
    }
    throw error;
  }
}

/**
 * Waits until no process of the group is left: npm reports its exit before the kernel has
 * necessarily finished tearing down every member, so poll for that, within a bound.
 */
async function groupEnded(pgid: number, withinMs = 5000): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (groupAlive(pgid)) {
    if (Date.now() > deadline) {
      return false;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return true;
}

/** What is left of the group, for the failure message. */
function members(pgid: number): string {
  const ps = spawnSync("ps", ["-o", "pid,ppid,stat,args", "-g", String(pgid)], {
    encoding: "utf8",
  });
  return ps.stdout;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

afterEach(() => {
  for (const { npm } of started.splice(0)) {
    if (npm.pid !== undefined && groupAlive(npm.pid)) {
      process.kill(-npm.pid, "SIGKILL");
    }
  }
});

describe("npm start and SIGTERM", () => {
  it("stops every process it started and frees the port when npm receives SIGTERM", async () => {
    const gateway = await npmStart();
    const port = await readyPort(gateway);
    const pgid = gateway.npm.pid!;

    const exited = once(gateway.npm, "exit");
    process.kill(pgid, "SIGTERM"); // npm only, as a process manager or `docker stop` would
    const [code] = (await exited) as [number | null, NodeJS.Signals | null];

    expect(gateway.output()).toMatch(/"signal":"SIGTERM".*shutting down/);
    expect(code).toBe(0);
    // npm exits once its child has; a shell in between would leave node running, orphaned.
    expect(await groupEnded(pgid), members(pgid)).toBe(true);
    expect(await portIsFree(port)).toBe(true);
  });

  it("keeps serving during SHUTDOWN_DRAIN_DELAY_MS, then stops", async () => {
    const gateway = await npmStart({ SHUTDOWN_DRAIN_DELAY_MS: "1500" });
    const port = await readyPort(gateway);
    const pgid = gateway.npm.pid!;

    const exited = once(gateway.npm, "exit");
    process.kill(pgid, "SIGTERM");
    await gateway.line(/"drainMs":1500.*shutting down/);

    // Stopping has begun: readiness says so, for load balancers that poll it...
    const readiness = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(readiness.status).toBe(503);
    expect(await readiness.json()).toEqual({ status: "stopping" });
    // ...yet requests are still answered, while they notice.
    const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ me { subject } }" }),
    });
    const body = await response.text();
    expect(response.status, body).toBe(200);
    expect(JSON.parse(body)).toEqual({ data: { me: { subject: "anonymous" } } });

    const [code] = (await exited) as [number | null];
    expect(code).toBe(0);
    expect(await groupEnded(pgid), members(pgid)).toBe(true);
    expect(await portIsFree(port)).toBe(true);
  });

  it("with tracing on and the collector unreachable, logs the export problem and still stops promptly", async () => {
    const closedPort = await freePort();
    const gateway = await npmStart({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${closedPort}`,
      OTEL_BSP_SCHEDULE_DELAY: "100",
      // The exporter retries a refused connection until this bound (10 s by default).
      OTEL_EXPORTER_OTLP_TIMEOUT: "1000",
    });
    const port = await readyPort(gateway, /"tracing":true.*ready at/);
    const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ me { subject } }" }),
    });
    expect(response.status).toBe(200);
    await gateway.line(/"component":"tracing".*trace export problem/);

    const exited = once(gateway.npm, "exit");
    process.kill(gateway.npm.pid!, "SIGTERM");
    const [code] = (await exited) as [number | null];
    // The last export is abandoned after a bounded wait, not the 10 s forced exit (code 1).
    expect(code).toBe(0);
    expect(gateway.output()).not.toContain("shutdown took too long");
  });
});
