import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { request } from "node:http";
import { connect } from "node:net";
import { networkInterfaces } from "node:os";
import { createInterface } from "node:readline";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { directoryDataDir } from "../helpers/directory-folder.js";

/**
 * `npm run dev:issuer` (scripts/dev-issuer.ts) with the standalone emulator and the gateway in
 * production mode, all three as real processes, configured only from the lines they print: what
 * docs/local-production.md tells a developer to do.
 */

interface Launched {
  child: ChildProcess;
  /** stdout lines so far. */
  lines: string[];
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children: ChildProcess[] = [];

/**
 * `node --import tsx <script>` with exactly `env` (plus PATH), resolved once `ready` accepts the
 * stdout lines read so far; rejected if the process exits first.
 */
async function launch(
  args: string[],
  env: Record<string, string>,
  ready: (lines: string[]) => boolean,
): Promise<Launched> {
  const child = spawn(process.execPath, ["--import", "tsx", ...args], {
    cwd: process.cwd(),
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let output = "";
  const lines: string[] = [];
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      output += `${line}\n`;
      lines.push(line);
      if (ready(lines)) {
        resolve();
      }
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`${args[0]} exited (${code ?? signal}) before it was ready:\n${output}`)),
    );
  });
  return { child, lines, output: () => output, exited };
}

/** `NAME=value` lines as a record (the value may hold `=`). */
function settings(lines: string[]): Record<string, string> {
  return Object.fromEntries(
    lines.map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
}

const PRINTED = [
  "AUTH_MODE",
  "AUTH_JWKS_URL",
  "AUTH_ISSUER",
  "AUTH_AUDIENCE",
  "USER_TOKEN",
  "ADMIN_TOKEN",
] as const;

let issuer: Launched;
let directory: { dir: string; remove(): void } | undefined;
let printed: Record<string, string>;
let gatewayUrl: string;

beforeAll(async () => {
  const emulatorStarting = launch(
    ["packages/emulator/src/main.ts"],
    { ACS_EMULATOR_PORT: "0", LOG_LEVEL: "warn" },
    (lines) => lines.some((line) => line.startsWith("COMMUNICATION_SERVICES_CONNECTION_STRING=")),
  );
  issuer = await launch(["scripts/dev-issuer.ts", "--port", "0"], {}, (lines) =>
    lines.some((line) => line.startsWith("ADMIN_TOKEN=")),
  );
  const emulator = await emulatorStarting;
  // Not the repository's .data/directory, which other test processes may open too; createUser
  // reaches the directory, and a folder of its own opens faster than `memory`.
  directory = await directoryDataDir();
  printed = settings(issuer.lines);
  const connectionString = settings(emulator.lines).COMMUNICATION_SERVICES_CONNECTION_STRING!;

  const gateway = await launch(
    ["src/main.ts"],
    {
      NODE_ENV: "production",
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
      DIRECTORY_DATA_DIR: directory.dir,
      AUTH_MODE: printed.AUTH_MODE!,
      AUTH_JWKS_URL: printed.AUTH_JWKS_URL!,
      AUTH_ISSUER: printed.AUTH_ISSUER!,
      AUTH_AUDIENCE: printed.AUTH_AUDIENCE!,
      COMMUNICATION_SERVICES_CONNECTION_STRING: connectionString,
    },
    (lines) => lines.some((line) => line.includes('"url"') && line.includes("ready at")),
  );
  const ready = gateway.lines.find((line) => line.includes("ready at"))!;
  gatewayUrl = (JSON.parse(ready) as { url: string }).url;
}, 120_000);

afterAll(async () => {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) {
            resolve();
            return;
          }
          child.once("exit", () => resolve());
          child.kill("SIGKILL");
        }),
    ),
  );
  directory?.remove();
});

async function graphql(query: string, token?: string) {
  const response = await fetch(gatewayUrl, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ query }),
  });
  const body = (await response.json()) as {
    data?: any;
    errors?: { message: string; extensions?: { code?: string } }[];
  };
  return { status: response.status, ...body };
}

describe("npm run dev:issuer", () => {
  it("prints the AUTH_* settings and two tokens, on loopback, that the verifier accepts", async () => {
    expect(issuer.lines.map((line) => line.slice(0, line.indexOf("=")))).toEqual(PRINTED);
    for (const line of issuer.lines) {
      // Pasteable into a shell as is: no quoting needed.
      expect(line).toMatch(/^[A-Z_]+=[\w.:/~+-]+$/);
    }
    expect(printed.AUTH_MODE).toBe("jwt");
    const jwksUrl = new URL(printed.AUTH_JWKS_URL!);
    expect(jwksUrl.hostname).toBe("127.0.0.1");
    expect(printed.AUTH_ISSUER).toBe(jwksUrl.origin);
    expect(issuer.output()).toContain("DEVELOPMENT ONLY");

    const jwks = (await (await fetch(jwksUrl)).json()) as { keys: Record<string, string>[] };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: "RSA", alg: "RS256", use: "sig" });
    expect(jwks.keys[0]).not.toHaveProperty("d");
    const discovery = (await (
      await fetch(`${printed.AUTH_ISSUER}/.well-known/openid-configuration`)
    ).json()) as Record<string, unknown>;
    expect(discovery).toMatchObject({ issuer: printed.AUTH_ISSUER, jwks_uri: jwksUrl.href });

    const user = decodeJwt(printed.USER_TOKEN!);
    const admin = decodeJwt(printed.ADMIN_TOKEN!);
    expect(decodeProtectedHeader(printed.USER_TOKEN!)).toMatchObject({
      alg: "RS256",
      kid: jwks.keys[0]!.kid,
    });
    expect(user).toMatchObject({ iss: printed.AUTH_ISSUER, aud: printed.AUTH_AUDIENCE });
    expect(user.sub).toBe("dev-user-1");
    expect(user.roles).toBeUndefined();
    expect(admin.roles).toEqual(["acs.admin"]);
    expect(admin.exp! - admin.iat!).toBe(3600);
    expect(issuer.output()).toMatch(/expire at \d{4}-\d\d-\d\dT/);
  });

  it("lets the admin token create users in the production gateway", async () => {
    const created = await graphql("mutation { createUser { id } }", printed.ADMIN_TOKEN);
    expect(created.errors).toBeUndefined();
    expect(created.data.createUser.id).toMatch(/^8:acs:/);
  });

  it("lets the user token issue its own ACS token", async () => {
    const issued = await graphql(
      "mutation { issueMyToken(scopes: [VOIP]) { token expiresOn } }",
      printed.USER_TOKEN,
    );
    expect(issued.errors).toBeUndefined();
    expect(issued.data.issueMyToken.token).toMatch(/^ey/);
    expect(Date.parse(issued.data.issueMyToken.expiresOn)).not.toBeNaN();
  });

  it("refuses createUser to the user token (FORBIDDEN) and everything without a token", async () => {
    const forbidden = await graphql("mutation { createUser { id } }", printed.USER_TOKEN);
    expect(forbidden.data).toBeNull();
    expect(forbidden.errors?.[0]?.extensions?.code).toBe("FORBIDDEN");
    const anonymous = await graphql("mutation { createUser { id } }");
    expect(anonymous.status).toBe(401);
    expect(anonymous.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
  });

  it("runs the gateway in production mode (no introspection)", async () => {
    const introspection = await graphql("{ __schema { queryType { name } } }", printed.ADMIN_TOKEN);
    expect(introspection.errors?.[0]?.extensions?.code).toBe("GRAPHQL_VALIDATION_FAILED");
    expect(introspection.data).toBeUndefined();
  });

  it("mints more tokens on POST /token", async () => {
    const minted = await fetch(`${printed.AUTH_ISSUER}/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ sub: "someone-else", admin: false }),
    });
    expect(minted.status).toBe(200);
    const { token, expiresOn } = (await minted.json()) as { token: string; expiresOn: string };
    expect(Date.parse(expiresOn)).toBe(decodeJwt(token).exp! * 1000);
    const me = await graphql("{ me { subject } }", token);
    expect(me.data).toEqual({ me: { subject: "someone-else" } });

    const typo = await fetch(`${printed.AUTH_ISSUER}/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ subject: "x", admin: true }),
    });
    expect(typo.status).toBe(400);
    const notJson = await fetch(`${printed.AUTH_ISSUER}/token`, {
      method: "POST",
      body: JSON.stringify({ sub: "x", admin: true }),
    });
    expect(notJson.status).toBe(415);
  });

  it("is reachable on loopback only, and by loopback names only", async () => {
    const { port } = new URL(printed.AUTH_ISSUER!);
    // A page whose DNS name was rebound to 127.0.0.1 sends its own name as Host.
    const status = await new Promise<number | undefined>((resolve, reject) => {
      request(
        {
          host: "127.0.0.1",
          port,
          path: "/.well-known/jwks.json",
          headers: { host: `attacker.example:${port}` },
        },
        (response) => {
          response.resume();
          resolve(response.statusCode);
        },
      )
        .on("error", reject)
        .end();
    });
    expect(status).toBe(421);
    const external = Object.values(networkInterfaces())
      .flat()
      .find((address) => address && address.family === "IPv4" && !address.internal);
    if (external) {
      const outcome = await new Promise<string>((resolve) => {
        const socket = connect(Number(port), external.address);
        socket.once("connect", () => {
          socket.destroy();
          resolve("connected");
        });
        socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"));
      });
      expect(outcome).toBe("ECONNREFUSED");
    }
  });

  it("prints usage on --help, saying it is for development", () => {
    const help = spawnSync(
      process.execPath,
      ["--import", "tsx", "scripts/dev-issuer.ts", "--help"],
      {
        cwd: process.cwd(),
        env: { PATH: process.env.PATH ?? "" },
        encoding: "utf8",
        timeout: 60_000,
      },
    );
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("Usage: npm run dev:issuer");
    expect(help.stdout).toContain("DEVELOPMENT-ONLY");
    expect(help.stdout).toContain("--port");
  }, 60_000);

  it("exits 0 on SIGINT, even with a client's connection open", async () => {
    // An idle connection, as a JWKS client's keep-alive one: it must not hold the process open.
    const socket = connect(Number(new URL(printed.AUTH_ISSUER!).port), "127.0.0.1");
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.on("error", () => {});
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    issuer.child.kill("SIGINT");
    expect(await issuer.exited).toEqual({ code: 0, signal: null });
    await closed;
  });
});
