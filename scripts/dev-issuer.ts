#!/usr/bin/env node
/**
 * `npm run dev:issuer`: a DEVELOPMENT-ONLY JWT issuer, so that production mode (NODE_ENV=production,
 * which requires AUTH_MODE=jwt) can be tried on one machine. Never use it for anything real: it
 * mints an admin token for anyone who asks on loopback.
 *
 * It makes an RS256 key pair in memory (a new one on every start, so tokens die with the process),
 * listens on 127.0.0.1 only (there is no option to listen anywhere else) and serves
 * - `GET /.well-known/jwks.json`: the public key, for the gateway's AUTH_JWKS_URL;
 * - `GET /.well-known/openid-configuration`: a minimal discovery document;
 * - `POST /token` with `{"sub": "...", "admin": true}` (content-type application/json): one more
 *   token, answered as `{"token": "...", "expiresOn": "<ISO 8601>"}`.
 *
 * Once it listens it prints on stdout, one `NAME=value` per line (values never need quoting):
 * AUTH_MODE, AUTH_JWKS_URL, AUTH_ISSUER, AUTH_AUDIENCE, USER_TOKEN (an end user) and ADMIN_TOKEN
 * (its `roles` claim holds AUTH_ADMIN_ROLE, default `acs.admin`). Everything else goes to stderr.
 * SIGINT or SIGTERM closes it and exits 0.
 *
 * The tokens satisfy src/auth/jwt-verifier.ts: an asymmetric algorithm, `iss` and `aud` as printed,
 * a non-empty `sub`, an `exp` (one hour), and admin rights only through the `roles` claim.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { parseArgs } from "node:util";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from "jose";

const HOST = "127.0.0.1";
const DEFAULT_PORT = 4100;
const AUDIENCE = "api://acs-identity-gateway-dev";
const ALGORITHM = "RS256";
const LIFETIME_SECONDS = 60 * 60;
const USER_SUBJECT = "dev-user-1";
const ADMIN_SUBJECT = "dev-admin-1";
/** The gateway's own setting and default, so both agree when run from the same shell. */
const ADMIN_ROLE = process.env.AUTH_ADMIN_ROLE || "acs.admin";
/** The verifier's bound on `sub` (jwt-verifier.ts). */
const MAX_SUBJECT_LENGTH = 1024;
const MAX_BODY_BYTES = 4096;

const USAGE = `Usage: npm run dev:issuer -- [--port <port>]

A DEVELOPMENT-ONLY JWT issuer for trying the gateway with NODE_ENV=production on this machine.
It listens on ${HOST} only, with a key pair made at start (tokens die with the process).

Options:
  --port <port>   port to listen on (default ${DEFAULT_PORT}; 0 = any free port)
  -h, --help      print this help

Once listening it prints on stdout (everything else goes to stderr):
  AUTH_MODE=jwt
  AUTH_JWKS_URL=http://${HOST}:<port>/.well-known/jwks.json
  AUTH_ISSUER=http://${HOST}:<port>
  AUTH_AUDIENCE=${AUDIENCE}
  USER_TOKEN=<an end user's bearer token: sub ${USER_SUBJECT}, no roles>
  ADMIN_TOKEN=<an admin's bearer token: sub ${ADMIN_SUBJECT}, roles ["${ADMIN_ROLE}"]>
Tokens are valid for ${LIFETIME_SECONDS / 60} minutes. The admin role is AUTH_ADMIN_ROLE (default acs.admin).

More tokens:
  curl -s -X POST http://${HOST}:<port>/token -H 'content-type: application/json' \\
    -d '{"sub": "someone-else", "admin": false}'
  -> {"token":"eyJ...","expiresOn":"..."}

Ctrl-C (SIGINT) or SIGTERM stops it. See docs/local-production.md.
`;

function fail(message: string, code = 2): never {
  process.stderr.write(`dev-issuer: ${message}\n`);
  process.exit(code);
}

function parsePort(argv: string[]): number | "help" {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { port: { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    fail(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
  }
  if (values.help) {
    return "help";
  }
  if (values.port === undefined) {
    return DEFAULT_PORT;
  }
  const port = Number(values.port);
  if (!/^\d+$/.test(values.port) || port > 65535) {
    fail(`--port must be a whole number from 0 to 65535, not "${values.port}"`);
  }
  return port;
}

const parsed = parsePort(process.argv.slice(2));
if (parsed === "help") {
  process.stdout.write(USAGE);
  process.exit(0);
}
const listenPort: number = parsed;

const { privateKey, publicKey } = await generateKeyPair(ALGORITHM);
const jwk = await exportJWK(publicKey);
const kid = await calculateJwkThumbprint(jwk);
const jwks = JSON.stringify({ keys: [{ ...jwk, kid, alg: ALGORITHM, use: "sig" }] });

let issuer = "";
let port = 0;

async function mint(subject: string, admin: boolean): Promise<{ token: string; expiresOn: Date }> {
  const now = Math.floor(Date.now() / 1000);
  const exp = now + LIFETIME_SECONDS;
  const token = await new SignJWT(admin ? { roles: [ADMIN_ROLE] } : {})
    .setProtectedHeader({ alg: ALGORITHM, kid, typ: "JWT" })
    .setIssuer(issuer)
    .setAudience(AUDIENCE)
    .setSubject(subject)
    .setIssuedAt(now)
    .setExpirationTime(exp)
    .sign(privateKey);
  return { token, expiresOn: new Date(exp * 1000) };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}

function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) {
        chunks.push(chunk);
      }
    });
    req.on("end", () =>
      resolve(size > MAX_BODY_BYTES ? undefined : Buffer.concat(chunks).toString("utf8")),
    );
    req.on("error", reject);
  });
}

/** `{"sub": "...", "admin": true}`, or why not (unknown fields are refused: a typo grants nothing). */
function tokenRequest(text: string): { sub: string; admin: boolean } | string {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return "the body is not JSON";
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return 'send {"sub": "...", "admin": true|false}';
  }
  const { sub, admin = false, ...rest } = body as Record<string, unknown>;
  if (Object.keys(rest).length > 0) {
    return `unknown fields: ${Object.keys(rest).join(", ")} (only sub and admin)`;
  }
  if (typeof sub !== "string" || sub === "" || sub.length > MAX_SUBJECT_LENGTH) {
    return `sub must be a string of 1 to ${MAX_SUBJECT_LENGTH} characters`;
  }
  if (typeof admin !== "boolean") {
    return "admin must be true or false";
  }
  return { sub, admin };
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  // Loopback only, also against DNS rebinding: a web page whose name was made to resolve to
  // 127.0.0.1 sends its own name as Host, and is refused.
  const host = req.headers.host;
  if (host !== `${HOST}:${port}` && host !== `localhost:${port}`) {
    send(res, 421, { error: `use http://${HOST}:${port}` });
    return;
  }
  const path = (req.url ?? "/").split("?")[0];
  if (path === "/.well-known/jwks.json" || path === "/.well-known/openid-configuration") {
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(res, 405, { error: "GET only" });
      return;
    }
    if (path === "/.well-known/jwks.json") {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(jwks);
      return;
    }
    send(res, 200, {
      issuer,
      jwks_uri: `${issuer}/.well-known/jwks.json`,
      response_types_supported: ["id_token"],
      subject_types_supported: ["public"],
      id_token_signing_alg_values_supported: [ALGORITHM],
    });
    return;
  }
  if (path === "/token") {
    if (req.method !== "POST") {
      send(res, 405, { error: "POST only" });
      return;
    }
    // JSON only: a web page cannot send it cross-origin without a preflight, which is not answered.
    if (!/^application\/json\b/i.test(req.headers["content-type"] ?? "")) {
      send(res, 415, { error: "content-type must be application/json" });
      return;
    }
    const text = await readBody(req);
    if (text === undefined) {
      send(res, 413, { error: `the body is over ${MAX_BODY_BYTES} bytes` });
      return;
    }
    const request = tokenRequest(text);
    if (typeof request === "string") {
      send(res, 400, { error: request });
      return;
    }
    const { token, expiresOn } = await mint(request.sub, request.admin);
    process.stderr.write(
      `dev-issuer: minted a token for ${JSON.stringify(request.sub)}${request.admin ? ` (roles ["${ADMIN_ROLE}"])` : ""}, expires ${expiresOn.toISOString()}\n`,
    );
    send(res, 200, { token, expiresOn: expiresOn.toISOString() });
    return;
  }
  send(res, 404, { error: "not found: GET /.well-known/jwks.json, POST /token" });
}

const server = createServer((req, res) => {
  handle(req, res).catch((error: unknown) => {
    process.stderr.write(`dev-issuer: ${error instanceof Error ? error.message : String(error)}\n`);
    if (!res.headersSent) {
      send(res, 500, { error: "internal error" });
    } else {
      res.destroy();
    }
  });
});

// Handlers first, then the lines: whoever reads them may signal at once.
let stopping = false;
const stop = (signal: NodeJS.Signals) => {
  if (stopping) {
    return;
  }
  stopping = true;
  process.stderr.write(`dev-issuer: stopping (${signal})\n`);
  server.close(() => process.exit(0));
  // Keep-alive connections (the gateway's JWKS fetches) would hold close() open.
  server.closeAllConnections();
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

server.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EADDRINUSE") {
    fail(
      `port ${listenPort} on ${HOST} is in use; pass --port <another> or --port 0 (any free port)`,
      1,
    );
  }
  fail(`could not listen: ${error.message}`, 1);
});
server.listen(listenPort, HOST, () => {
  if (stopping) {
    return;
  }
  void announce();
});

async function announce(): Promise<void> {
  const address = server.address();
  port = typeof address === "object" && address ? address.port : listenPort;
  issuer = `http://${HOST}:${port}`;
  const user = await mint(USER_SUBJECT, false);
  const admin = await mint(ADMIN_SUBJECT, true);
  process.stdout.write(
    [
      "AUTH_MODE=jwt",
      `AUTH_JWKS_URL=${issuer}/.well-known/jwks.json`,
      `AUTH_ISSUER=${issuer}`,
      `AUTH_AUDIENCE=${AUDIENCE}`,
      `USER_TOKEN=${user.token}`,
      `ADMIN_TOKEN=${admin.token}`,
      "",
    ].join("\n"),
  );
  process.stderr.write(
    [
      `dev-issuer: DEVELOPMENT ONLY. Listening on ${issuer} (loopback only).`,
      `dev-issuer: USER_TOKEN is sub "${USER_SUBJECT}" (no roles); ADMIN_TOKEN is sub "${ADMIN_SUBJECT}" with roles ["${ADMIN_ROLE}"].`,
      `dev-issuer: both expire at ${user.expiresOn.toISOString()} (in ${LIFETIME_SECONDS / 60} minutes); restart me or POST ${issuer}/token for fresh ones.`,
      "dev-issuer: export the lines above into the gateway's shell (see docs/local-production.md); Ctrl-C stops me.",
      "",
    ].join("\n"),
  );
}
