/**
 * The machine-local services the benchmark owns: a redis-server on a free loopback port and the
 * JWKS the gateways verify callers against. The benchmark's own, not test/helpers/: it needs only
 * start, a client, the process id and stop.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { exportJWK, generateKeyPair, SignJWT } from "jose";

/** A port that was free a moment ago on 127.0.0.1 (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface RedisProcess {
  url: string;
  /** The redis-server's process id (its CPU time is read around each run). */
  readonly pid: number | undefined;
  /** A plain client (lazily connected, closed by stop). */
  client(): Redis;
  stop(): Promise<void>;
}

async function waitForPing(port: number, deadline: number): Promise<void> {
  for (;;) {
    const probe = new Redis({
      port,
      host: "127.0.0.1",
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    probe.on("error", () => {});
    try {
      await probe.connect();
      if ((await probe.ping()) === "PONG") {
        probe.disconnect();
        return;
      }
    } catch {
      // not up yet
    }
    probe.disconnect();
    if (Date.now() > deadline) {
      throw new Error(`redis-server on port ${port} did not answer PING`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A redis-server on a free loopback port, never the machine's shared one on 6379; no persistence. */
export async function startRedis(): Promise<RedisProcess> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "acsgw-redis-"));
  const args = [
    ...["--port", String(port), "--bind", "127.0.0.1", "--dir", dir],
    ...["--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
  ];
  const child: ChildProcess = spawn("redis-server", args, { stdio: ["ignore", "ignore", "pipe"] });
  child.stderr?.on("data", () => {});
  await waitForPing(port, Date.now() + 10_000);
  let plain: Redis | undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid,
    client() {
      if (!plain) {
        plain = new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: 1 });
        // Once per client: one listener per call piled up (MaxListenersExceededWarning).
        plain.on("error", () => {});
      }
      return plain;
    },
    async stop() {
      plain?.disconnect();
      if (child.exitCode === null && child.signalCode === null) {
        await new Promise<void>((resolve) => {
          child.once("exit", () => resolve());
          child.kill("SIGKILL");
        });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Commands this Redis node has served since it started, by name (`INFO commandstats`; scripts'
 * inner commands included, as Redis counts them). The difference of two readings is what ran in
 * between: how the bench counts round trips.
 */
export async function commandCounts(client: Redis): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const [, name, calls] of String(await client.info("commandstats")).matchAll(
    /^cmdstat_([\w|-]+):calls=(\d+)/gm,
  )) {
    counts.set(name!, Number(calls));
  }
  return counts;
}

/** A local identity provider: a JWKS with one RS256 key on a free loopback port, and its signer. */
export interface Issuer {
  jwksUrl: string;
  issuer: string;
  audience: string;
  sign(
    claims: Record<string, unknown>,
    options: { subject: string; expiresIn: string },
  ): Promise<string>;
  close(): Promise<void>;
}

export async function startIssuer(): Promise<Issuer> {
  const kid = "key-1";
  const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" };
  const server = createHttpServer((_req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const issuer = "https://issuer.test/";
  const audience = "api://acs-gateway";
  return {
    jwksUrl: `http://127.0.0.1:${port}/keys`,
    issuer,
    audience,
    sign: (claims, { subject, expiresIn }) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: "RS256", kid, typ: "JWT" })
        .setIssuedAt()
        .setIssuer(issuer)
        .setAudience(audience)
        .setExpirationTime(expiresIn)
        .setSubject(subject)
        .sign(privateKey),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
