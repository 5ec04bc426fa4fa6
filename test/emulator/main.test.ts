import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "node:https";
import { CommunicationIdentityClient } from "@azure/communication-identity";
import { afterAll, describe, expect, it } from "vitest";
import {
  EMULATOR_DEFAULT_PORT,
  EMULATOR_WELL_KNOWN_ACCESS_KEY,
  emulatorOptionsFromEnv,
} from "@acs-identity-gateway/emulator";
import { emulatorCommandSettings } from "../../packages/emulator/src/options.js";
import { createTestCa } from "../helpers/emulator.js";

/** `npm run emulator` as a child process, and the settings it reads. */

const children: ChildProcess[] = [];

function runEmulator(env: Record<string, string>, args: string[] = []) {
  // What `npm run emulator` execs (node with tsx's loader: one process, so a signal reaches the
  // emulator itself), started directly: npm would stand between the test and the emulator.
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "packages/emulator/src/main.ts", ...args],
    {
      cwd: process.cwd(),
      env: { ...process.env, LOG_LEVEL: "info", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  /** Once the process has exited and its stdout and stderr are read to the end. */
  const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
  const firstLine = new Promise<string>((resolve, reject) => {
    const check = () => {
      if (stdout.includes("\n")) {
        resolve(stdout.slice(0, stdout.indexOf("\n")));
      }
    };
    child.stdout.on("data", check);
    void exited.then(() => reject(new Error(`exited before printing: ${stderr}`)));
  });
  firstLine.catch(() => {}); // a run that is expected to fail never prints
  /** The first `n` stdout lines, once printed. */
  const lines = (n: number) =>
    new Promise<string[]>((resolve, reject) => {
      const check = () => {
        const all = stdout.split("\n");
        if (all.length > n) {
          resolve(all.slice(0, n));
        }
      };
      check();
      child.stdout.on("data", check);
      void exited.then(() => reject(new Error(`exited before printing: ${stderr}`)));
    });
  return { child, firstLine, lines, exited, closed, output: () => ({ stdout, stderr }) };
}

afterAll(() => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
    }
  }
});

describe("npm run emulator", () => {
  it("prints the connection string line once it listens, serves the SDK, and exits 0 on SIGTERM", async () => {
    const run = runEmulator({ ACS_EMULATOR_PORT: "0", ACS_EMULATOR_THROTTLE: "acs" });
    const line = await run.firstLine;
    expect(line).toMatch(
      /^COMMUNICATION_SERVICES_CONNECTION_STRING=endpoint=http:\/\/127\.0\.0\.1:\d+\/;accesskey=\S+$/,
    );
    const connectionString = line.slice(line.indexOf("=") + 1);
    const accessKey = /accesskey=(\S+)$/.exec(line)![1]!;
    expect(accessKey).toBe(EMULATOR_WELL_KNOWN_ACCESS_KEY);
    // Exactly what a user does with the printed line.
    const client = new CommunicationIdentityClient(connectionString, {
      allowInsecureConnection: true,
      retryOptions: { maxRetries: 0 },
    });
    const { token } = await client.createUserAndToken(["chat"]);

    run.child.kill("SIGTERM");
    expect(await run.exited).toBe(0);
    const { stdout, stderr } = run.output();
    expect(stdout.trim().split("\n")).toHaveLength(1);
    // Logs go to stderr, and never carry the key or a token.
    expect(stderr).toContain("ACS Identity emulator listening");
    expect(stderr).not.toContain(accessKey);
    expect(stderr).not.toContain(token);
  });

  it("with TLS files and Entra on, prints an https connection string and the managed-identity lines", async () => {
    const ca = createTestCa();
    try {
      const run = runEmulator({
        ACS_EMULATOR_PORT: "0",
        ACS_EMULATOR_TLS_CERT: ca.certFile,
        ACS_EMULATOR_TLS_KEY: ca.keyFile,
        ACS_EMULATOR_ENTRA: "on",
      });
      // The test tenant's AZURE_* lines come around these (entra-authority.test.ts checks them).
      const [connection, ...rest] = await run.lines(9);
      const endpointLine = rest.find((line) => line.startsWith("IDENTITY_ENDPOINT="));
      const headerLine = rest.find((line) => line.startsWith("IDENTITY_HEADER="));
      expect(connection).toMatch(
        /^COMMUNICATION_SERVICES_CONNECTION_STRING=endpoint=https:\/\/127\.0\.0\.1:\d+\/;accesskey=\S+$/,
      );
      expect(endpointLine).toMatch(/^IDENTITY_ENDPOINT=https:\/\/127\.0\.0\.1:\d+\/msi\/token$/);
      expect(headerLine).toMatch(/^IDENTITY_HEADER=[0-9a-f]{64}$/);
      const url = new URL(endpointLine!.slice("IDENTITY_ENDPOINT=".length));
      url.searchParams.set("resource", "https://communication.azure.com");
      url.searchParams.set("api-version", "2019-08-01");
      // What ManagedIdentityCredential does with those two lines, trusting the test CA.
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        request(
          url,
          {
            ca: ca.ca,
            headers: { "X-IDENTITY-HEADER": headerLine!.slice("IDENTITY_HEADER=".length) },
          },
          (res) => {
            let body = "";
            res.on("data", (c: Buffer) => (body += c.toString()));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
          },
        )
          .on("error", reject)
          .end();
      });
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body)).toMatchObject({ token_type: "Bearer" });
      run.child.kill("SIGTERM");
      expect(await run.exited).toBe(0);
      // The managed-identity secret is printed once, on stdout, and never logged.
      expect(run.output().stderr).not.toContain(headerLine!.slice("IDENTITY_HEADER=".length));
    } finally {
      ca.remove();
    }
  });

  it("exits 0 on SIGINT too", async () => {
    const run = runEmulator({ ACS_EMULATOR_PORT: "0" });
    await run.firstLine;
    run.child.kill("SIGINT");
    expect(await run.exited).toBe(0);
  });

  it("lists every bad setting on stderr and exits 1", async () => {
    const run = runEmulator({
      ACS_EMULATOR_PORT: "70000",
      ACS_EMULATOR_ACCESS_KEY: "secret but not base64!",
      ACS_EMULATOR_THROTTLE: "sometimes",
    });
    expect(await run.exited).toBe(1);
    const { stdout, stderr } = run.output();
    expect(stdout).toBe("");
    expect(stderr).toContain("ACS_EMULATOR_PORT");
    expect(stderr).toContain("ACS_EMULATOR_ACCESS_KEY");
    expect(stderr).toContain("ACS_EMULATOR_THROTTLE");
    expect(stderr).not.toContain("secret but not base64!");
  });
});

/** The pino lines of a run's stderr, parsed. */
const logLines = (stderr: string) =>
  stderr
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as { level: number; msg: string });

/**
 * Starts the command with `args` and `env`, sends it one unsigned request, stops it, and returns
 * its log lines once its stderr is read to the end. The refusal logs `emulator refused a request's
 * signature` (warn) and then `emulator refusal` (debug), both before the 401 is sent: once the
 * answer is in, either line is already written, so the finished stderr shows what the level let
 * through, with no waiting on time.
 */
async function logsOfOneRefusal(env: Record<string, string>, args: string[] = []) {
  const run = runEmulator({ ACS_EMULATOR_PORT: "0", ...env }, args);
  const line = await run.firstLine;
  const endpoint = /endpoint=(\S+?);/.exec(line)![1]!;
  const res = await fetch(new URL("/identities?api-version=2023-10-01", endpoint), {
    method: "POST",
  });
  expect(res.status).toBe(401);
  await res.arrayBuffer();
  run.child.kill("SIGTERM");
  expect(await run.exited).toBe(0);
  await run.closed;
  return logLines(run.output().stderr);
}

describe("the emulator's own log level", () => {
  const PINO_DEBUG = 20;

  it("logs debug lines at debug (--log-level wins over ACS_EMULATOR_LOG_LEVEL), not at info", async () => {
    const [atDebug, atInfo] = await Promise.all([
      logsOfOneRefusal({ ACS_EMULATOR_LOG_LEVEL: "info" }, ["--log-level", "debug"]),
      // LOG_LEVEL is only the fallback: ACS_EMULATOR_LOG_LEVEL decides when set.
      logsOfOneRefusal({ ACS_EMULATOR_LOG_LEVEL: "info", LOG_LEVEL: "debug" }),
    ]);
    for (const lines of [atDebug, atInfo]) {
      // The request was handled in both runs: the warn line is there.
      expect(lines.map((l) => l.msg)).toContain("emulator refused a request's signature");
    }
    expect(atDebug).toContainEqual(
      expect.objectContaining({ level: PINO_DEBUG, msg: "emulator refusal" }),
    );
    expect(atInfo.filter((l) => l.level <= PINO_DEBUG)).toEqual([]);
  });

  it("takes ACS_EMULATOR_LOG_LEVEL, and refuses a level pino does not have", async () => {
    const atWarn = await logsOfOneRefusal({ ACS_EMULATOR_LOG_LEVEL: "warn" });
    // warn lets the refusal's warning through, and neither the debug nor the info lines.
    expect(atWarn.map((l) => l.msg)).toEqual(["emulator refused a request's signature"]);

    const bad = runEmulator({ ACS_EMULATOR_PORT: "0" }, ["--log-level", "verbose"]);
    expect(await bad.exited).toBe(1);
    await bad.closed;
    expect(bad.output().stdout).toBe("");
    expect(bad.output().stderr).toContain(
      "--log-level: must be one of fatal, error, warn, info, debug, trace, silent",
    );
  });
});

describe("emulatorOptionsFromEnv", () => {
  it("returns no options for an empty environment, so every default applies", () => {
    expect(emulatorOptionsFromEnv({})).toEqual({});
    expect(EMULATOR_DEFAULT_PORT).toBe(10500);
  });

  it("treats empty strings as unset", () => {
    expect(
      emulatorOptionsFromEnv({
        ACS_EMULATOR_HOST: "",
        ACS_EMULATOR_PORT: "",
        ACS_EMULATOR_ACCESS_KEY: "",
        ACS_EMULATOR_THROTTLE: "",
        ACS_EMULATOR_SIGNING_KEY_FILE: "",
      }),
    ).toEqual({});
  });

  it("reads the TLS files, Entra mode, Teams JWKS URL and state file", () => {
    const ca = createTestCa();
    try {
      expect(
        emulatorOptionsFromEnv({
          ACS_EMULATOR_TLS_CERT: ca.certFile,
          ACS_EMULATOR_TLS_KEY: ca.keyFile,
          ACS_EMULATOR_ENTRA: "any",
          ACS_EMULATOR_TEAMS_JWKS_URL:
            "https://login.microsoftonline.com/common/discovery/v2.0/keys",
          ACS_EMULATOR_STATE_FILE: "/var/lib/emulator/state.json",
        }),
      ).toEqual({
        tls: { cert: ca.cert, key: ca.key },
        entra: "any",
        teamsJwksUrl: "https://login.microsoftonline.com/common/discovery/v2.0/keys",
        stateFile: "/var/lib/emulator/state.json",
      });
    } finally {
      ca.remove();
    }
    expect(() =>
      emulatorOptionsFromEnv({
        ACS_EMULATOR_TLS_CERT: "/some/cert.pem",
        ACS_EMULATOR_ENTRA: "yes",
        ACS_EMULATOR_TEAMS_JWKS_URL: "ftp://example.com/keys",
      }),
    ).toThrow(/ENTRA[\s\S]*TEAMS_JWKS_URL[\s\S]*TLS_CERT and ACS_EMULATOR_TLS_KEY: set both/);
  });

  it("reads every setting, including the signing key file", () => {
    const dir = mkdtempSync(join(tmpdir(), "acs-emulator-"));
    try {
      const file = join(dir, "key.pem");
      writeFileSync(file, "PEM CONTENT");
      expect(
        emulatorOptionsFromEnv({
          ACS_EMULATOR_HOST: "0.0.0.0",
          ACS_EMULATOR_PORT: "0",
          ACS_EMULATOR_ACCESS_KEY: Buffer.alloc(32, 9).toString("base64"),
          ACS_EMULATOR_RESOURCE_ID: "11111111-2222-4333-8444-555555555555",
          ACS_EMULATOR_LATENCY_MS: "25",
          ACS_EMULATOR_THROTTLE: "acs",
          ACS_EMULATOR_SIGNING_KEY_FILE: file,
        }),
      ).toEqual({
        host: "0.0.0.0",
        port: 0,
        accessKey: Buffer.alloc(32, 9).toString("base64"),
        resourceId: "11111111-2222-4333-8444-555555555555",
        latencyMs: 25,
        throttle: "acs",
        signingKeyPem: "PEM CONTENT",
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reads ACS_EMULATOR_LOOSE and ACS_EMULATOR_REVOCATION_DELAY_S, and refuses what they are not", () => {
    expect(
      emulatorOptionsFromEnv({
        ACS_EMULATOR_LOOSE: "true",
        ACS_EMULATOR_REVOCATION_DELAY_S: "900",
      }),
    ).toEqual({ loose: true, revocationDelaySeconds: 900 });
    expect(emulatorOptionsFromEnv({ ACS_EMULATOR_LOOSE: "false" })).toEqual({ loose: false });
    // Switches as the gateway's: 1 or 0 too.
    expect(emulatorOptionsFromEnv({ ACS_EMULATOR_LOOSE: "1" })).toEqual({ loose: true });
    expect(emulatorOptionsFromEnv({ ACS_EMULATOR_LOOSE: "0" })).toEqual({ loose: false });
    expect(() =>
      emulatorOptionsFromEnv({
        ACS_EMULATOR_LOOSE: "yes",
        ACS_EMULATOR_REVOCATION_DELAY_S: "901",
      }),
    ).toThrow(
      /ACS_EMULATOR_LOOSE[\s\S]*ACS_EMULATOR_REVOCATION_DELAY_S: must be a whole number from 0 to 900/,
    );
  });

  it("gives the command's flags the last word, names them in problems, and reads the log level", () => {
    const env = {
      ACS_EMULATOR_PORT: "not a port",
      ACS_EMULATOR_THROTTLE: "acs",
      ACS_EMULATOR_LOG_LEVEL: "warn",
      LOG_LEVEL: "debug",
    };
    expect(emulatorCommandSettings({ port: { flag: "--port", value: "0" } }, env)).toEqual({
      options: { port: 0, throttle: "acs" },
      logLevel: "warn",
    });
    // LOG_LEVEL only when ACS_EMULATOR_LOG_LEVEL is unset; info when neither is.
    expect(emulatorCommandSettings({}, { LOG_LEVEL: "debug" }).logLevel).toBe("debug");
    expect(emulatorCommandSettings({}, {}).logLevel).toBe("info");
    expect(() =>
      emulatorCommandSettings(
        { port: { flag: "--port", value: "70000" }, throttle: { flag: "--throttle", value: "x" } },
        { ACS_EMULATOR_LOG_LEVEL: "loud" },
      ),
    ).toThrow(/--port: [\s\S]*--throttle: [\s\S]*ACS_EMULATOR_LOG_LEVEL: must be one of/);
    // --log-level stands for ACS_EMULATOR_LOG_LEVEL: it wins over it, and is named in problems.
    expect(
      emulatorCommandSettings(
        { logLevel: { flag: "--log-level", value: "trace" } },
        { ACS_EMULATOR_LOG_LEVEL: "warn", LOG_LEVEL: "debug" },
      ).logLevel,
    ).toBe("trace");
    expect(() =>
      emulatorCommandSettings(
        { logLevel: { flag: "--log-level", value: "Debug" } },
        { ACS_EMULATOR_LOG_LEVEL: "warn" },
      ),
    ).toThrow(/--log-level: must be one of fatal, error, warn, info, debug, trace, silent/);
    // An empty variable counts as unset, as every other one does.
    expect(
      emulatorCommandSettings({}, { ACS_EMULATOR_LOG_LEVEL: "", LOG_LEVEL: "" }).logLevel,
    ).toBe("info");
  });

  it("throws one error listing every problem", () => {
    expect(() =>
      emulatorOptionsFromEnv({
        ACS_EMULATOR_PORT: "-1",
        ACS_EMULATOR_ACCESS_KEY: "!!",
        ACS_EMULATOR_RESOURCE_ID: "not-a-guid",
        ACS_EMULATOR_LATENCY_MS: "slow",
        ACS_EMULATOR_THROTTLE: "on",
        ACS_EMULATOR_SIGNING_KEY_FILE: "/nonexistent/key.pem",
      }),
    ).toThrow(
      /PORT[\s\S]*ACCESS_KEY[\s\S]*RESOURCE_ID[\s\S]*LATENCY_MS[\s\S]*THROTTLE[\s\S]*SIGNING_KEY_FILE/,
    );
  });
});
