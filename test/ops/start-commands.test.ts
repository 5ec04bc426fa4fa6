import { execFile } from "node:child_process";
import { connect } from "node:net";
import { networkInterfaces } from "node:os";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { directoryDataDir } from "../helpers/directory-folder.js";
import {
  buildLock,
  childPids,
  isRunning,
  postGraphQL,
  spawnGateway,
  lockRepository,
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
const cleanups: (() => void)[] = [];
afterEach(async () => {
  for (const gateway of started.splice(0)) {
    if (gateway.child.exitCode === null && gateway.child.signalCode === null) {
      // npm and what it started: a SIGKILL to npm alone left the gateway running, orphaned.
      const tree = (pid: number): number[] => [pid, ...childPids(pid).flatMap(tree)];
      for (const pid of tree(gateway.child.pid!)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
      await gateway.exited;
    }
  }
  for (const cleanup of cleanups.splice(0)) {
    cleanup();
  }
});

async function start(script: string, env: Record<string, string>): Promise<GatewayProcess> {
  const gateway = await spawnGateway("npm", ["run", script], {
    cwd: ROOT,
    env: {
      NODE_ENV: "development",
      PORT: "0",
      LOG_LEVEL: "info",
      // Not the repository's .data/directory, which other test processes may open too. In
      // memory, it is only made if a request needs it.
      DIRECTORY_DATA_DIR: "memory",
      ...env,
    },
  });
  started.push(gateway);
  return gateway;
}

/**
 * `npm run build`, what the README says to run before `npm run start:prod`: the emulator
 * package's build, then the gateway's. It runs from the file's start, while the `npm start` tests
 * run (a dozen seconds of tsc, the longest step here). The build outputs are this file's until
 * start:prod has stopped: another test process packing the emulator rewrites
 * packages/emulator/dist/, which start:prod imports.
 */
let building: Promise<() => void> | undefined;
beforeAll(() => {
  building = (async () => {
    const release = await lockRepository(ROOT, buildLock("@acs-identity-gateway/emulator"));
    try {
      // `--noCheck` reaches the gateway's tsc only: it emits the very same dist/ and leaves out
      // the type check (half of the build's CPU time), which `npm run typecheck` does anyway.
      await run("npm", ["run", "build", "--", "--noCheck"], { cwd: ROOT });
      return release;
    } catch (error) {
      release();
      throw error;
    }
  })();
  // Awaited (and its failure reported) by the start:prod tests.
  building.catch(() => {});
});
afterAll(async () => {
  (await building?.catch(() => undefined))?.();
});

describe.skipIf(externalAddress === undefined)(
  externalAddress === undefined
    ? "npm start's interface: skipped, this machine has no non-loopback IPv4 address"
    : `npm start's interface (this machine's ${externalAddress})`,
  // npm, then node loading the gateway through tsx, then the directory's database: seconds of
  // CPU each, many more on a busy machine.
  { timeout: 120_000 },
  () => {
    it("listens on loopback only when HOST is unset: nothing off this machine can mint tokens", async () => {
      // createUser reaches the directory: a folder of its own, cheaper to open than `memory`.
      const directory = await directoryDataDir();
      cleanups.push(directory.remove);
      const gateway = await start("start", { DIRECTORY_DATA_DIR: directory.dir });
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

describe("npm run start:prod", { timeout: 120_000 }, () => {
  beforeAll(async () => {
    await building;
  }, 240_000);

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
