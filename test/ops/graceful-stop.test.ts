import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../helpers/ports.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

interface Started {
  npm: ChildProcess;
  port: number;
  output: () => string;
  /** Resolves with the first output line that matches. */
  line: (pattern: RegExp) => Promise<string>;
}

const started: Started[] = [];

/** `npm start` in its own process group (so the whole tree can be inspected and cleaned up). */
async function npmStart(env: Record<string, string> = {}): Promise<Started> {
  const port = await freePort();
  const npm = spawn("npm", ["start", "--silent"], {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      NODE_ENV: "development",
      PORT: String(port),
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      COMMUNICATION_SERVICES_CONNECTION_STRING: "",
      REDIS_URL: "",
      REDIS_CLUSTER_NODES: "",
      OTEL_EXPORTER_OTLP_ENDPOINT: "",
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "",
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
    port,
    output: () => text,
    line: (pattern) =>
      new Promise((resolve, reject) => {
        const found = text.split("\n").find((line) => pattern.test(line));
        if (found !== undefined) {
          resolve(found);
          return;
        }
        waiters.push({ pattern, resolve });
        npm.once("exit", () =>
          reject(new Error(`npm start exited before printing ${pattern}:\n${text}`)),
        );
      }),
  };
  started.push(handle);
  return handle;
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
    await gateway.line(/ready at http:\/\/127\.0\.0\.1:\d+\/graphql/);
    const pgid = gateway.npm.pid!;

    const exited = once(gateway.npm, "exit");
    process.kill(pgid, "SIGTERM"); // npm only, as a process manager or `docker stop` would
    const [code] = (await exited) as [number | null, NodeJS.Signals | null];

    expect(gateway.output()).toMatch(/"signal":"SIGTERM".*shutting down/);
    expect(code).toBe(0);
    // npm exits once its child has; a shell in between would leave node running, orphaned.
    expect(groupAlive(pgid)).toBe(false);
    expect(await portIsFree(gateway.port)).toBe(true);
  });

  it("keeps serving during SHUTDOWN_DRAIN_DELAY_MS, then stops", async () => {
    const gateway = await npmStart({ SHUTDOWN_DRAIN_DELAY_MS: "5000" });
    await gateway.line(/ready at/);
    const pgid = gateway.npm.pid!;

    const exited = once(gateway.npm, "exit");
    process.kill(pgid, "SIGTERM");
    await gateway.line(/"drainMs":5000.*shutting down/);

    // Stopping has begun, yet requests are still answered: load balancers get time to notice.
    const response = await fetch(`http://127.0.0.1:${gateway.port}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ me { subject } }" }),
    });
    const body = await response.text();
    expect(response.status, body).toBe(200);
    expect(JSON.parse(body)).toEqual({ data: { me: { subject: "anonymous" } } });

    const [code] = (await exited) as [number | null];
    expect(code).toBe(0);
    expect(groupAlive(pgid)).toBe(false);
    expect(await portIsFree(gateway.port)).toBe(true);
  });

  it("refuses to start with an invalid SHUTDOWN_DRAIN_DELAY_MS and says why", async () => {
    const gateway = await npmStart({ SHUTDOWN_DRAIN_DELAY_MS: "soon" });
    const [code] = (await once(gateway.npm, "exit")) as [number | null];
    expect(code).not.toBe(0);
    expect(gateway.output()).toContain("SHUTDOWN_DRAIN_DELAY_MS: must be a whole number");
  });
});
