import { execFile } from "node:child_process";
import { connect } from "node:net";
import { networkInterfaces } from "node:os";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  childPids,
  isRunning,
  postGraphQL,
  spawnGateway,
  type GatewayProcess,
} from "../helpers/processes.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** This machine's first IPv4 address that is not loopback, if it has one. */
const externalAddress = Object.values(networkInterfaces())
  .flat()
  .find((address) => address && address.family === "IPv4" && !address.internal)?.address;

/** Resolves "connected" or the connection error's code, for `host:port`. */
function tryConnect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve("connected");
    });
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

const started: GatewayProcess[] = [];
afterEach(async () => {
  for (const gateway of started.splice(0)) {
    if (gateway.child.exitCode === null && gateway.child.signalCode === null) {
      gateway.child.kill("SIGKILL");
      await gateway.exited;
    }
  }
});

async function start(script: string, env: Record<string, string>): Promise<GatewayProcess> {
  const gateway = await spawnGateway("npm", ["run", script], {
    cwd: ROOT,
    env: { NODE_ENV: "development", PORT: "0", LOG_LEVEL: "info", ...env },
  });
  started.push(gateway);
  return gateway;
}

describe.skipIf(externalAddress === undefined)(
  externalAddress === undefined
    ? "npm start's interface: skipped, this machine has no non-loopback IPv4 address"
    : `npm start's interface (this machine's ${externalAddress})`,
  () => {
    it("listens on loopback only when HOST is unset: nothing off this machine can mint tokens", async () => {
      const gateway = await start("start", {});
      const port = Number(new URL(gateway.url).port);
      expect(new URL(gateway.url).hostname).toBe("127.0.0.1");
      expect(await tryConnect("127.0.0.1", port)).toBe("connected");
      expect(await tryConnect(externalAddress!, port)).toBe("ECONNREFUSED");
      const answer = await postGraphQL(gateway.url, "mutation { createUser { id } }");
      expect(answer.data.createUser.id).toMatch(/^8:acs:/);
    });

    it("listens on every interface when HOST=0.0.0.0 is set on purpose", async () => {
      const gateway = await start("start", { HOST: "0.0.0.0" });
      const port = Number(new URL(gateway.url).port);
      expect(await tryConnect(externalAddress!, port)).toBe("connected");
    });
  },
);

describe("npm run start:prod", () => {
  beforeAll(async () => {
    // What the README says to run first: the emulator package's build and the gateway's.
    await run("npm", ["run", "build"], { cwd: ROOT });
  }, 180_000);

  it("stops with its process on SIGTERM: no node left running, the port released", async () => {
    const gateway = await start("start:prod", {});
    const npm = gateway.child.pid!;
    // npm's child is the gateway itself (`exec` replaced the shell), and nothing else runs below.
    const below = childPids(npm).flatMap((pid) => [pid, ...childPids(pid)]);
    expect(below.length).toBeGreaterThan(0);
    const port = Number(new URL(gateway.url).port);

    gateway.child.kill("SIGTERM");
    expect(await gateway.exited).toBe(0);
    expect(below.filter(isRunning)).toEqual([]);
    expect(await tryConnect("127.0.0.1", port)).toBe("ECONNREFUSED");
  });
});
