import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { CommunicationIdentityClient } from "@azure/communication-identity";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ANSWERED_API_VERSIONS,
  EMULATOR_DEFAULT_RESOURCE_ID,
  EMULATOR_USER_OBJECT_ID,
  type EmulatorEntraAuthority,
} from "@acs-identity-gateway/emulator";
import { createTestCa, type TestCa } from "../helpers/emulator.js";
import { createUserWithToken, packIntoApp, type PackedTarball } from "../helpers/processes.js";
import { introspect } from "../helpers/introspect.js";
import { startSourceGateway } from "../helpers/source-gateway.js";
import { compileScript } from "../helpers/scripts.js";
import {
  expectCredentialExchanges,
  PRINTED_ENTRA_LINES,
  runEntraSuite,
  tlsRequest,
  type TlsResponse,
} from "./entra-helpers.js";
import { jsSdkSuiteEnv } from "./js-sdk-suite-env.js";
import { unsignedJwt } from "./jwt.js";
import { surfaceProbes } from "./loose-probes.js";
import { rawRequest, signedHeaders, type RawRequest } from "./signing.js";
import { assertErrorShape, assertMatchesSpec } from "./spec.js";

/**
 * `acs-identity-emulator` as a user gets it: `npm pack -w @acs-identity-gateway/emulator` (its
 * prepack builds it), installed from the tarball into an app in a temporary folder outside the
 * repository, and its command run with flags. The SDK on the client side is the repository's.
 */
const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
/** Debian's python3-azure with aiohttp (.ci/run installs them); the Python part says when it skips. */
const pythonReady =
  spawnSync(PYTHON, ["-c", "import azure.communication.identity, aiohttp"], { stdio: "ignore" })
    .status === 0;
const root = fileURLToPath(new URL("../..", import.meta.url));
const API = "api-version=2023-10-01";

/** The contract's flags, written here (not read from the package) so a lost one fails. */
const FLAGS: [flag: string, variable: string][] = [
  ["--host", "ACS_EMULATOR_HOST"],
  ["--port", "ACS_EMULATOR_PORT"],
  ["--state", "ACS_EMULATOR_STATE_FILE"],
  ["--cert", "ACS_EMULATOR_TLS_CERT"],
  ["--key", "ACS_EMULATOR_TLS_KEY"],
  ["--loose", "ACS_EMULATOR_LOOSE"],
  ["--entra", "ACS_EMULATOR_ENTRA"],
  ["--access-key", "ACS_EMULATOR_ACCESS_KEY"],
  ["--latency-ms", "ACS_EMULATOR_LATENCY_MS"],
  ["--throttle", "ACS_EMULATOR_THROTTLE"],
  ["--revocation-delay-s", "ACS_EMULATOR_REVOCATION_DELAY_S"],
  ["--log-level", "ACS_EMULATOR_LOG_LEVEL"],
];

let app: string;
let bin: string;
let packed: PackedTarball;
const children: ChildProcess[] = [];
const startTimes: number[] = [];

interface Command {
  child: ChildProcess;
  /** The first `n` stdout lines, once printed. */
  lines(n: number): Promise<string[]>;
  exited: Promise<number | string | null>;
  output(): { stdout: string; stderr: string };
}

/** Spawns the installed command with exactly these flags and variables (plus PATH and HOME). */
function command(args: string[], env: Record<string, string> = {}): Command {
  const started = performance.now();
  const child = spawn(bin, args, {
    cwd: app,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stdout = "";
  let stderr = "";
  let timed = false;
  child.stdout!.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    if (!timed && stdout.includes("\n")) {
      timed = true;
      startTimes.push(performance.now() - started);
    }
  });
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | string | null>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal)),
  );
  const lines = (n: number) =>
    new Promise<string[]>((resolve, reject) => {
      const check = () => {
        const all = stdout.split("\n");
        if (all.length > n) {
          resolve(all.slice(0, n));
        }
      };
      check();
      child.stdout!.on("data", check);
      void exited.then(() => reject(new Error(`exited before printing ${n} lines:\n${stderr}`)));
    });
  return { child, lines, exited, output: () => ({ stdout, stderr }) };
}

/** A running command and what its first line says. */
async function emulator(args: string[], env: Record<string, string> = {}) {
  const cmd = command(args, env);
  const [line] = await cmd.lines(1);
  const match = /^COMMUNICATION_SERVICES_CONNECTION_STRING=(endpoint=(\S+);accesskey=(\S+))$/.exec(
    line!,
  );
  expect(match, line).not.toBeNull();
  const [, connectionString, endpoint, accessKey] = match!;
  return {
    ...cmd,
    connectionString: connectionString!,
    endpoint: endpoint!,
    accessKey: accessKey!,
  };
}

async function stop(cmd: Command): Promise<void> {
  cmd.child.kill("SIGTERM");
  expect(await cmd.exited).toBe(0);
}

const sdk = (connectionString: string) =>
  new CommunicationIdentityClient(connectionString, {
    allowInsecureConnection: true,
    retryOptions: { maxRetries: 0 },
  });

beforeAll(async () => {
  app = mkdtempSync(join(tmpdir(), "acs-emulator-app-"));
  // jose, pino and zod come from npm's cache after the repository's `npm ci`.
  ({ packed } = await packIntoApp(root, "@acs-identity-gateway/emulator", {
    dir: app,
    manifest: { name: "ci-app", private: true },
  }));
  bin = join(app, "node_modules/.bin/acs-identity-emulator");
}, 240_000);

afterAll(() => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
    }
  }
  if (startTimes.length > 0) {
    const sorted = [...startTimes].sort((a, b) => a - b);
    console.log(
      `acs-identity-emulator, spawn to printed line: median ${Math.round(sorted[Math.floor(sorted.length / 2)]!)} ms, max ${Math.round(sorted.at(-1)!)} ms over ${sorted.length} starts`,
    );
  }
  if (app) {
    rmSync(app, { recursive: true, force: true });
  }
});

describe("the packed emulator, installed into an app outside the repository", () => {
  it("holds the built command, its README and licence, and depends on jose, pino and zod only", () => {
    const paths = packed.files.map((file) => file.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        "package.json",
        "README.md",
        "LICENSE",
        "dist/main.js",
        "dist/cli.js",
        "dist/index.d.ts",
      ]),
    );
    expect(
      paths.filter((path) => !/^(dist\/|package\.json$|README\.md$|LICENSE$)/.test(path)),
    ).toEqual([]);
    const installed = join(app, "node_modules/@acs-identity-gateway/emulator");
    expect(lstatSync(installed).isSymbolicLink()).toBe(false);
    const manifest = JSON.parse(readFileSync(join(installed, "package.json"), "utf8"));
    expect(Object.keys(manifest.dependencies ?? {}).sort()).toEqual(["jose", "pino", "zod"]);
    // Scoped packages are published restricted unless they say otherwise.
    expect(manifest.publishConfig).toEqual({ access: "public" });
    console.log(
      `emulator tarball: ${packed.files.length} files, ${packed.size} bytes packed, ${packed.unpackedSize} unpacked; dependencies ${JSON.stringify(manifest.dependencies)}`,
    );
  });

  it("--help lists every flag with its variable, names the --entra lines in their printed order, and exits 0", async () => {
    const help = command(["--help"]);
    expect(await help.exited).toBe(0);
    const { stdout } = help.output();
    expect(stdout).toMatch(/^Usage: acs-identity-emulator/);
    for (const [flag, variable] of FLAGS) {
      // `  --flag [VALUE]  VARIABLE[=value]  help`, one line each.
      expect(stdout, flag).toMatch(new RegExp(`^  ${flag}(?: \\S+)? +${variable}\\b`, "m"));
    }
    // It names the lines --entra adds in the order the command prints them.
    const at = PRINTED_ENTRA_LINES.map((name) => stdout.indexOf(`${name}=`));
    expect(at.every((index) => index >= 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
  });

  it("lists every bad flag and value on stderr, prints nothing on stdout, and exits 1", async () => {
    const bad = command(
      [
        "--port",
        "70000",
        "--throttle",
        "sometimes",
        "--bogus",
        "--revocation-delay-s",
        "901",
        "--loose=yes",
        "--log-level",
        "loud",
      ],
      { ACS_EMULATOR_LATENCY_MS: "slow" },
    );
    expect(await bad.exited).toBe(1);
    const { stdout, stderr } = bad.output();
    expect(stdout).toBe("");
    for (const named of [
      "--bogus: unknown flag",
      "--loose: takes no value",
      "--port: must be a whole number",
      "--throttle: ",
      "--revocation-delay-s: must be a whole number from 0 to 900",
      "ACS_EMULATOR_LATENCY_MS: must be a whole number",
      "--log-level: must be one of fatal, error, warn, info, debug, trace, silent",
    ]) {
      expect(stderr).toContain(named);
    }
  });

  it("--port 0 --state FILE: users and tokens survive SIGTERM and a restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "acs-emulator-cli-state-"));
    try {
      const state = join(dir, "state.json");
      // A flag wins over its variable: the port variable is wrong, the flag is right.
      const first = await emulator(["--port", "0", "--state", state], {
        ACS_EMULATOR_PORT: "not a port",
      });
      expect(first.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      const { user, token } = await sdk(first.connectionString).createUserAndToken(["chat"]);
      await stop(first);
      expect(first.output().stdout.trim().split("\n")).toHaveLength(1);

      const second = await emulator(["--port", "0", "--state", state]);
      await expect(sdk(second.connectionString).getToken(user, ["voip"])).resolves.toMatchObject({
        token: expect.any(String),
      });
      expect(await introspect(second, token)).toMatchObject({ active: true });
      await stop(second);
      expect(existsSync(state)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe("with TLS", () => {
    let ca: TestCa;
    beforeAll(() => {
      ca = createTestCa();
    });
    afterAll(() => ca?.remove());

    it("--cert/--key serves https to the SDK trusting the CA through NODE_EXTRA_CA_CERTS; --entra adds its lines", async () => {
      const tls = await emulator([
        "--port",
        "0",
        "--cert",
        ca.certFile,
        "--key",
        ca.keyFile,
        "--entra",
      ]);
      expect(tls.endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
      // The connection string line first, then the Entra ID lines (printed in one write).
      await tls.lines(3);
      const printed = tls.output().stdout.split("\n");
      expect(printed[0]).toMatch(/^COMMUNICATION_SERVICES_CONNECTION_STRING=/);
      expect(printed).toContainEqual(
        expect.stringMatching(/^IDENTITY_ENDPOINT=https:\/\/127\.0\.0\.1:\d+\//),
      );
      expect(printed).toContainEqual(expect.stringMatching(/^IDENTITY_HEADER=\S+$/));
      // The SDK without allowInsecureConnection, in a process that trusts the test CA.
      const script = `
        import { CommunicationIdentityClient } from "@azure/communication-identity";
        const client = new CommunicationIdentityClient(process.env.CS, { retryOptions: { maxRetries: 0 } });
        const { user, token } = await client.createUserAndToken(["voip"]);
        console.log(JSON.stringify({ id: user.communicationUserId, segments: token.split(".").length }));
      `;
      const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
        cwd: root,
        env: { PATH: process.env.PATH, CS: tls.connectionString, NODE_EXTRA_CA_CERTS: ca.caFile },
      });
      expect(JSON.parse(stdout.trim())).toEqual({
        id: expect.stringMatching(/^8:acs:/),
        segments: 3,
      });
      await stop(tls);
    });

    it("passes the JavaScript SDK's live calls and the Python quickstart, trusting only the CA", async () => {
      const tls = await emulator(["--port", "0", "--cert", ca.certFile, "--key", ca.keyFile]);
      try {
        const suite = await compileScript(
          fileURLToPath(new URL("./js-sdk-suite.ts", import.meta.url)),
        );
        const js = await run(process.execPath, [suite, "hmac"], {
          cwd: root,
          env: jsSdkSuiteEnv({ caFile: ca.caFile, connectionString: tls.connectionString }),
        });
        const calls = js.stdout
          .split("\n")
          .filter((line) => line.startsWith("{"))
          .map((line) => (JSON.parse(line) as { call: string }).call);
        expect(calls).toEqual([
          "createUser",
          "createUserAndToken",
          "getToken",
          "revokeTokens",
          "getTokenForTeamsUser",
          "getToken(59)",
          "deleteUser",
        ]);

        if (pythonReady) {
          const py = await run(
            PYTHON,
            [fileURLToPath(new URL("../python/quickstart.py", import.meta.url))],
            {
              env: {
                PATH: process.env.PATH,
                COMMUNICATION_SERVICES_CONNECTION_STRING: tls.connectionString,
                REQUESTS_CA_BUNDLE: ca.caFile,
              },
            },
          );
          expect(py.stdout).toContain("QUICKSTART OK");
        } else {
          console.log("the Python quickstart part is skipped: Debian's python3-azure is missing");
        }
      } finally {
        await stop(tls);
      }
    });

    describe(
      "--cert/--key --entra, one command, used with the settings it printed",
      { timeout: 120_000 },
      () => {
        const ACS = "https://communication.azure.com";
        /** The first preview's own API: no token on create, issued through `/token`. */
        const LEGACY = "2020-07-20-preview2";
        /**
         * The command's token signing key, given as a file: its authority's secrets derive from
         * it, and the test re-signs an expired token of its test user with it.
         */
        const signingKeyPem = generateKeyPairSync("rsa", { modulusLength: 2048 })
          .privateKey.export({ type: "pkcs8", format: "pem" })
          .toString();
        let dir: string;
        let cmd: Awaited<ReturnType<typeof emulator>>;
        /** The printed lines, `NAME=value`, in order. */
        let printed: [name: string, value: string][];
        let value: (name: string) => string;
        let call: (req: RawRequest) => Promise<TlsResponse>;

        beforeAll(async () => {
          dir = mkdtempSync(join(tmpdir(), "acs-emulator-cli-entra-"));
          const keyFile = join(dir, "signing.key");
          writeFileSync(keyFile, signingKeyPem, { mode: 0o600 });
          cmd = await emulator(
            ["--port", "0", "--cert", ca.certFile, "--key", ca.keyFile, "--entra"],
            { ACS_EMULATOR_SIGNING_KEY_FILE: keyFile, ACS_EMULATOR_LOG_LEVEL: "warn" },
          );
          printed = (await cmd.lines(9)).map((line) => {
            const at = line.indexOf("=");
            return [line.slice(0, at), line.slice(at + 1)];
          });
          const values = new Map(printed);
          value = (name) => values.get(name) ?? "";
          // A signed ACS call over TLS (HMAC, as the SDK signs), trusting only the test CA.
          call = (req) =>
            tlsRequest(new URL(req.path, cmd.endpoint), ca.ca, {
              method: req.method,
              headers: signedHeaders(cmd.endpoint, cmd.accessKey, req),
              ...(req.body === undefined ? {} : { body: String(req.body) }),
            });
        });

        afterAll(async () => {
          if (cmd) {
            await stop(cmd);
          }
          if (dir) {
            rmSync(dir, { recursive: true, force: true });
          }
        });

        /** The printed AZURE_* lines, as a developer exports them. */
        const azureSettings = () =>
          Object.fromEntries(printed.filter(([name]) => name.startsWith("AZURE_")));

        /** The emulator's own view of a token (`POST /emulator/introspect`). */
        const introspected = async (token: string) => {
          const res = await call({
            method: "POST",
            path: "/emulator/introspect",
            body: JSON.stringify({ token }),
          });
          expect(res.status, res.text).toBe(200);
          return res.json as { active: boolean; claims?: Record<string, unknown> };
        };

        it("prints the connection string, the application's AZURE_* lines, IDENTITY_*, then the test user's", () => {
          expect(printed.map(([name]) => name)).toEqual([
            "COMMUNICATION_SERVICES_CONNECTION_STRING",
            ...PRINTED_ENTRA_LINES,
          ]);
          expect(value("AZURE_AUTHORITY_HOST")).toBe(new URL(cmd.endpoint).origin);
          // Nothing after them.
          expect(cmd.output().stdout.trim().split("\n")).toHaveLength(9);
        });

        it("answers every api-version it names in /emulator/health: a created identity with a token, and an issued token", async () => {
          const health = await tlsRequest(new URL("emulator/health", cmd.endpoint), ca.ca);
          expect(health.status, health.text).toBe(200);
          const versions = health.json.apiVersions as string[];
          // The packed build answers what the sources do.
          expect([...versions].sort()).toEqual([...ANSWERED_API_VERSIONS].sort());
          const issuedTokens: { version: string; id: string; token: string; scope: string }[] = [];
          for (const version of versions) {
            const v = `api-version=${version}`;
            const identityPath = (id: string, suffix: string) =>
              `/identities/${encodeURIComponent(id)}${suffix}?${v}`;
            if (version === LEGACY) {
              // Its create has no token (the spec's CommunicationIdentity, 200), and refuses one.
              const refused = await call({
                method: "POST",
                path: `/identities?${v}`,
                body: JSON.stringify({ createTokenWithScopes: ["chat"] }),
              });
              expect(refused.status, `${version}: ${refused.text}`).toBe(400);
              const created = await call({ method: "POST", path: `/identities?${v}` });
              expect(created.status, `${version}: ${created.text}`).toBe(200);
              assertMatchesSpec("CommunicationIdentity", created.json, version);
              const id = created.json.id as string;
              const issued = await call({
                method: "POST",
                path: identityPath(id, "/token"),
                body: JSON.stringify({ scopes: ["voip"] }),
              });
              expect(issued.status, `${version}: ${issued.text}`).toBe(200);
              assertMatchesSpec("CommunicationIdentityToken", issued.json, version);
              issuedTokens.push({ version, id, token: issued.json.token, scope: "voip" });
              continue;
            }
            const created = await call({
              method: "POST",
              path: `/identities?${v}`,
              body: JSON.stringify({ createTokenWithScopes: ["chat"] }),
            });
            expect(created.status, `${version}: ${created.text}`).toBe(201);
            assertMatchesSpec("CommunicationIdentityAccessTokenResult", created.json, version);
            const id = created.json.identity.id as string;
            expect(created.json.accessToken?.token, version).toEqual(expect.any(String));
            issuedTokens.push({
              version,
              id,
              token: created.json.accessToken.token,
              scope: "chat",
            });
            const issued = await call({
              method: "POST",
              path: identityPath(id, "/:issueAccessToken"),
              body: JSON.stringify({ scopes: ["voip"] }),
            });
            expect(issued.status, `${version}: ${issued.text}`).toBe(200);
            assertMatchesSpec("CommunicationIdentityAccessToken", issued.json, version);
            issuedTokens.push({ version, id, token: issued.json.token, scope: "voip" });
          }
          // Each token is a live one of the command's, for its identity and scope.
          for (const { version, id, token, scope } of issuedTokens) {
            expect(id, version).toMatch(new RegExp(`^8:acs:${EMULATOR_DEFAULT_RESOURCE_ID}_`));
            expect(await introspected(token), version).toMatchObject({
              active: true,
              claims: { skypeid: id.slice(2), acsScope: scope },
            });
          }
        });

        it("ClientSecretCredential with the printed tenant, client, secret and authority host drives the identity client; a wrong secret is invalid_client", async () => {
          const run = await runEntraSuite("client-secret", ca.caFile, {
            ACS_TEST_ENDPOINT: cmd.endpoint,
            ENTRA_AUTHORITY_HOST: value("AZURE_AUTHORITY_HOST"),
            ENTRA_TENANT_ID: value("AZURE_TENANT_ID"),
            ENTRA_CLIENT_ID: value("AZURE_CLIENT_ID"),
            ENTRA_CLIENT_SECRET: value("AZURE_CLIENT_SECRET"),
          });
          expect(run.stderr).toBe("");
          expect(run.code).toBe(0);
          expect(run.steps.token.claims).toMatchObject({
            aud: ACS,
            tid: value("AZURE_TENANT_ID"),
            azp: value("AZURE_CLIENT_ID"),
            idtyp: "app",
          });
          expect(run.steps.identity.id).toMatch(/^8:acs:[0-9a-f-]{36}_[0-9a-f-]{36}$/);
          expect(run.steps.identity.issuedScope).toBe("chat");
          expect(run.steps["wrong-secret"].message).toContain("AADSTS7000215");
          expect(run.steps["wrong-secret"].message).toContain("invalid_client");
          // The calls reached this command: it lists the identity the suite created and deleted.
          const listed = await call({ method: "GET", path: "/emulator/identities?top=1000" });
          expect(listed.status, listed.text).toBe(200);
          expect(listed.json.value).toContainEqual(
            expect.objectContaining({ id: run.steps.identity.id, deleted: true }),
          );
        });

        it("AzureCommunicationTokenCredential with Entra options gets ACS tokens from /access/entra and /access/teamsExtension", async () => {
          const authority: EmulatorEntraAuthority = {
            authorityHost: value("AZURE_AUTHORITY_HOST"),
            tenantId: value("AZURE_TENANT_ID"),
            clientId: value("AZURE_CLIENT_ID"),
            clientSecret: value("AZURE_CLIENT_SECRET"),
            username: value("AZURE_USERNAME"),
            password: value("AZURE_PASSWORD"),
            userObjectId: EMULATOR_USER_OBJECT_ID,
            settings: azureSettings(),
          };
          await expectCredentialExchanges(
            {
              endpoint: cmd.endpoint,
              resourceId: EMULATOR_DEFAULT_RESOURCE_ID,
              entraAuthority: authority,
            },
            ca,
            signingKeyPem,
          );
        });

        it("the gateway, started with ACS_ENDPOINT and the printed AZURE_* settings, creates users and issues tokens", async () => {
          const gateway = await startSourceGateway({
            ACS_ENDPOINT: cmd.endpoint,
            // No connection string, no IDENTITY_*: the client secret is its only way in.
            ...azureSettings(),
            NODE_EXTRA_CA_CERTS: ca.caFile,
          });
          try {
            const { id, token } = await createUserWithToken(gateway.url);
            // The command minted it, for the user the gateway created there.
            expect(await introspected(token)).toMatchObject({
              active: true,
              claims: { skypeid: id.slice(2), acsScope: "voip" },
            });
            expect(gateway.output()).not.toContain(value("AZURE_CLIENT_SECRET"));
          } finally {
            await gateway.stop();
          }
        });

        it("checks a Teams exchange's token before its ids: an invalid token with an empty userId is 401", async () => {
          const appId = "2f6a5b5e-1c55-4d8f-9f0d-3a3b6c9a7e11";
          const userId = "9c7d3f1a-7b6e-4f0b-8e2a-5d4c3b2a1f00";
          const teamsClaims = (exp: number) => ({
            aud: "https://graph.microsoft.com",
            tid: "0d3b1c2a-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            appid: appId,
            oid: userId,
            exp,
          });
          const now = Math.floor(Date.now() / 1000);
          const exchange = (body: Record<string, string>) =>
            call({
              method: "POST",
              path: `/teamsUser/:exchangeAccessToken?${API}`,
              body: JSON.stringify(body),
            });
          for (const token of ["", "abc", unsignedJwt(teamsClaims(now - 1))]) {
            const res = await exchange({ token, appId, userId: "" });
            expect(res.status, `${token}: ${res.text}`).toBe(401);
            assertErrorShape(res.json);
            expect(res.json.error).toEqual({
              code: "InvalidAccessToken",
              message: "Provided access token is not valid.",
            });
          }
          // A token that passes, with the same empty userId: only now is the userId the problem.
          const missing = await exchange({
            token: unsignedJwt(teamsClaims(now + 3600)),
            appId,
            userId: "",
          });
          expect(missing.status, missing.text).toBe(400);
          expect(missing.json.error).toMatchObject({ code: "ValidationError", target: "UserId" });
        });
      },
    );
  });

  it("--loose answers an unknown api-version with the newest surface; without it, UnsupportedApiVersion", async () => {
    const [strict, loose] = await Promise.all([
      emulator(["--port", "0"]),
      emulator(["--port", "0", "--loose"]),
    ]);
    const refused = await rawRequest(strict.endpoint, strict.accessKey, {
      method: "POST",
      path: "/identities?api-version=2099-01-01",
    });
    expect(refused.status).toBe(400);
    expect(refused.json).toMatchObject({
      error: { code: "UnsupportedApiVersion", target: "api-version" },
    });
    const call = (req: RawRequest) => rawRequest(loose.endpoint, loose.accessKey, req);
    const newest = String(refused.headers["api-supported-versions"]).split(", ").at(-1)!;
    const asNewest = await surfaceProbes(call, newest);
    expect(asNewest.createWithToken).toBe("201");
    expect(await surfaceProbes(call, "2099-01-01")).toEqual(asNewest);
    await Promise.all([stop(strict), stop(loose)]);
  });

  it("answers /emulator/health unsigned, lists and resets only when signed, and takes `date` signing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "acs-emulator-cli-reset-"));
    try {
      const state = join(dir, "state.json");
      const cmd = await emulator(["--port", "0", "--state", state]);
      const health = await fetch(new URL("emulator/health", cmd.endpoint));
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: "ok", version: "0.1.0" });

      const call = (req: RawRequest) => rawRequest(cmd.endpoint, cmd.accessKey, req);
      // Signed over `date` with a Date header, as the 1.0.0-beta SDKs sign.
      const created = await call({
        method: "POST",
        path: `/identities?${API}`,
        sign: { dateHeader: "date" },
      });
      expect(created.status, created.text).toBe(201);
      const id = (created.json as { identity: { id: string } }).identity.id;

      const unsigned = { sign: { authorization: null } } as const;
      expect(
        (await call({ method: "GET", path: "/emulator/identities", ...unsigned })).status,
      ).toBe(401);
      expect((await call({ method: "POST", path: "/emulator/reset", ...unsigned })).status).toBe(
        401,
      );
      const listed = await call({ method: "GET", path: "/emulator/identities" });
      expect(listed.json).toMatchObject({ value: [{ id, deleted: false }], count: 1 });

      expect((await call({ method: "POST", path: "/emulator/reset" })).status).toBe(204);
      expect((await call({ method: "GET", path: "/emulator/identities" })).json).toEqual({
        value: [],
        count: 0,
      });
      expect(JSON.parse(readFileSync(state, "utf8")).identities).toEqual([]);
      await stop(cmd);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("--revocation-delay-s keeps a revoked token active; without it the revoke is immediate, and a delete always is", async () => {
    const [delayed, viaEnv, immediate] = await Promise.all([
      emulator(["--port", "0", "--revocation-delay-s", "900"]),
      // The variable alone sets it too.
      emulator(["--port", "0"], { ACS_EMULATOR_REVOCATION_DELAY_S: "900" }),
      emulator(["--port", "0"]),
    ]);
    for (const [cmd, activeAfterRevoke] of [
      [delayed, true],
      [viaEnv, true],
      [immediate, false],
    ] as const) {
      const client = sdk(cmd.connectionString);
      const { user, token } = await client.createUserAndToken(["chat"]);
      await client.revokeTokens(user);
      expect((await introspect(cmd, token)).active, cmd.endpoint).toBe(activeAfterRevoke);
      await client.deleteUser(user);
      expect(await introspect(cmd, token)).toMatchObject({ active: false, reason: "deleted" });
    }
    await Promise.all([stop(delayed), stop(viaEnv), stop(immediate)]);
  });
});
