import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import type { Logger } from "../logger.js";
import { AuthenticationError, createAuthenticator } from "./authenticator.js";
import { AcsError } from "./errors.js";
import { createHandlers, type HandlerResult } from "./handlers.js";
import {
  EMULATOR_API_VERSION,
  EMULATOR_DEFAULT_HOST,
  EMULATOR_DEFAULT_PORT,
  EMULATOR_DEFAULT_RESOURCE_ID,
  EMULATOR_OPERATIONS,
  EMULATOR_WELL_KNOWN_ACCESS_KEY,
  optionProblems,
  type EmulatorOperation,
  type EmulatorOptions,
} from "./options.js";
import { createIdentityStore } from "./store.js";
import { createThrottle } from "./throttle.js";
import { createTokenSigner } from "./token-signer.js";

export interface Emulator {
  /** `http://HOST:PORT/` */
  readonly endpoint: string;
  readonly accessKey: string;
  readonly resourceId: string;
  /** `endpoint=http://HOST:PORT/;accesskey=KEY` */
  readonly connectionString: string;
  /** Successfully answered (2xx) requests per operation since start: the way tests count upstream calls. */
  readonly counters: Readonly<Record<EmulatorOperation, number>>;
  /**
   * Test hook, settable at run time: awaited after the handler produced its answer (token already
   * minted) and before the response is written. Lets a test deliver an issue answer late, e.g.
   * after a concurrent revoke.
   */
  hooks: {
    beforeRespond?: (
      operation: EmulatorOperation,
      info: { identityId?: string },
    ) => Promise<void> | void;
  };
  close(): Promise<void>;
}

/**
 * Bodies above this are refused with 413. The largest legitimate body is a Teams exchange carrying an
 * AAD token (a few KB); 64 KiB leaves room without letting a client make the emulator buffer much.
 */
export const MAX_BODY_BYTES = 64 * 1024;
/** Past this, the emulator stops draining an oversized body and drops the connection. */
const DRAIN_LIMIT_BYTES = 8 * 1024 * 1024;

type Route =
  | { kind: "operation"; operation: EmulatorOperation; identitySegment?: string }
  | { kind: "jwks" }
  | { kind: "method-not-allowed"; allow: string }
  | { kind: "not-found" };

/** The REST API's paths (CommunicationIdentity.json) plus the emulator's two own ones (CONTRACT.md). */
function route(method: string, pathname: string): Route {
  const segments = pathname.split("/").slice(1);
  const one = (allow: string, operation: EmulatorOperation, identitySegment?: string): Route =>
    method === allow
      ? { kind: "operation", operation, identitySegment }
      : { kind: "method-not-allowed", allow };

  if (pathname === "/.well-known/jwks.json") {
    return method === "GET" ? { kind: "jwks" } : { kind: "method-not-allowed", allow: "GET" };
  }
  if (pathname === "/identities") {
    return one("POST", "createIdentity");
  }
  if (pathname === "/teamsUser/:exchangeAccessToken") {
    return one("POST", "exchangeTeamsUserAccessToken");
  }
  if (pathname === "/emulator/introspect") {
    return one("POST", "introspect");
  }
  if (segments[0] === "identities" && segments[1]) {
    if (segments.length === 2) {
      return one("DELETE", "deleteIdentity", segments[1]);
    }
    if (segments.length === 3 && segments[2] === ":issueAccessToken") {
      return one("POST", "issueAccessToken", segments[1]);
    }
    if (segments.length === 3 && segments[2] === ":revokeAccessTokens") {
      return one("POST", "revokeAccessTokens", segments[1]);
    }
  }
  return { kind: "not-found" };
}

/** Reads at most MAX_BODY_BYTES; an oversized body is drained (so the client reads the 413) and reported as undefined. */
function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"] ?? 0);
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = declared > MAX_BODY_BYTES;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > DRAIN_LIMIT_BYTES) {
        req.destroy();
        return;
      }
      if (size > MAX_BODY_BYTES) {
        tooLarge = true;
      }
      if (!tooLarge) {
        chunks.push(chunk);
      }
    });
    req.on("end", () => resolve(tooLarge ? undefined : Buffer.concat(chunks)));
    req.on("error", reject);
    req.on("close", () => {
      if (!req.complete) {
        reject(new Error("request aborted"));
      }
    });
  });
}

/** An MS-CV-like correlation vector: base64 of 16 random bytes, `.0` (the real header's shape). */
const correlationVector = () => `${randomBytes(16).toString("base64").replace(/=+$/, "")}.0`;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Starts the emulator: server factory -> request context -> authenticator -> handler -> store, as
 * in Azurite. Resolves once it listens; the caller owns it and must `close()` it.
 */
export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const problems = optionProblems(options);
  if (problems.length > 0) {
    throw new Error(`invalid emulator options:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
  const host = options.host ?? EMULATOR_DEFAULT_HOST;
  const accessKey = options.accessKey ?? EMULATOR_WELL_KNOWN_ACCESS_KEY;
  const resourceId = (options.resourceId ?? EMULATOR_DEFAULT_RESOURCE_ID).toLowerCase();
  const latencyMs = options.latencyMs ?? 0;
  const now = options.now ?? Date.now;
  const log: Logger = options.logger ?? pino({ level: "silent" });

  const store = createIdentityStore(resourceId);
  const signer = createTokenSigner({ privateKeyPem: options.signingKeyPem });
  const authenticator = createAuthenticator({ accessKey });
  const throttle = createThrottle(options.throttle ?? "off");
  const handlers = createHandlers({ resourceId, store, signer });
  const counters = Object.fromEntries(EMULATOR_OPERATIONS.map((op) => [op, 0])) as Record<
    EmulatorOperation,
    number
  >;
  const hooks: Emulator["hooks"] = {};

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const requestId = randomUUID();
    const method = req.method ?? "GET";
    const target = req.url ?? "/";
    const queryAt = target.indexOf("?");
    const pathname = queryAt < 0 ? target : target.slice(0, queryAt);
    const query = new URLSearchParams(queryAt < 0 ? "" : target.slice(queryAt + 1));
    const matched = route(method, pathname);
    let operation: EmulatorOperation | undefined;

    // The request context: headers every answer carries, as the real service sends them.
    const send = async (
      status: number,
      body: unknown,
      extraHeaders: Record<string, string> = {},
    ) => {
      if (latencyMs > 0) {
        await sleep(latencyMs);
      }
      const clientRequestId = req.headers["x-ms-client-request-id"];
      const headers: Record<string, string> = {
        "api-supported-versions": EMULATOR_API_VERSION,
        "MS-CV": correlationVector(),
        "x-ms-request-id": requestId,
        Date: new Date(now()).toUTCString(),
        ...extraHeaders,
      };
      if (typeof clientRequestId === "string") {
        headers["x-ms-client-request-id"] = clientRequestId;
      }
      let payload: string | undefined;
      if (body !== undefined) {
        payload = JSON.stringify(body);
        headers["Content-Type"] =
          status < 400 ? "application/json; charset=utf-8" : "application/json";
      }
      headers["X-Processing-Time"] = `${Math.round(performance.now() - started)}ms`;
      res.writeHead(status, headers);
      res.end(payload);
      if (operation && status >= 200 && status < 300) {
        counters[operation] += 1;
      }
      // Never the headers, the body or the query: they carry signatures and tokens.
      log.debug(
        { requestId, method, operation: operation ?? matched.kind, status },
        "emulator request",
      );
    };
    const sendError = (error: AcsError) =>
      send(error.status, error.toBody(), error.options.headers);

    try {
      // Read (or drain) the body first: the content hash covers it, and a client still sending
      // would otherwise see a reset instead of the answer.
      const body = await readBody(req);
      if (body === undefined) {
        res.setHeader("Connection", "close");
        await sendError(
          new AcsError(
            413,
            "RequestEntityTooLarge",
            `The request body exceeds the limit of ${MAX_BODY_BYTES} bytes.`,
          ),
        );
        return;
      }

      if (matched.kind === "not-found") {
        await sendError(
          new AcsError(404, "NotFound", `No operation matches ${method} ${pathname}.`),
        );
        return;
      }
      if (matched.kind === "method-not-allowed") {
        await sendError(
          new AcsError(
            405,
            "MethodNotAllowed",
            `${method} is not allowed on ${pathname}; use ${matched.allow}.`,
            {
              headers: { Allow: matched.allow },
            },
          ),
        );
        return;
      }
      if (matched.kind === "jwks") {
        await send(200, signer.jwks());
        return;
      }
      operation = matched.operation;

      // The api-version is checked before the signature so a client speaking another version
      // learns why even with a wrong key. The emulator's own introspection needs none.
      if (operation !== "introspect") {
        const apiVersion = query.get("api-version");
        if (apiVersion === null || apiVersion === "") {
          await sendError(
            new AcsError(
              400,
              "MissingApiVersionParameter",
              `The api-version query parameter is required. Supported version: ${EMULATOR_API_VERSION}.`,
              { target: "api-version" },
            ),
          );
          return;
        }
        if (apiVersion !== EMULATOR_API_VERSION) {
          await sendError(
            new AcsError(
              400,
              "UnsupportedApiVersion",
              `The api-version '${apiVersion.slice(0, 40)}' is not supported. Supported version: ${EMULATOR_API_VERSION}.`,
              { target: "api-version" },
            ),
          );
          return;
        }
      }

      try {
        authenticator.verify({ method, pathAndQuery: target, headers: req.headers, body });
      } catch (error) {
        if (error instanceof AuthenticationError) {
          log.warn(
            { requestId, operation, failure: error.failure },
            "emulator refused a request's signature",
          );
          await sendError(error.toAcsError());
          return;
        }
        throw error;
      }

      let identityId: string | undefined;
      if (matched.identitySegment !== undefined) {
        try {
          identityId = decodeURIComponent(matched.identitySegment);
        } catch {
          identityId = matched.identitySegment; // not valid percent-encoding: treated as a foreign id
        }
      }
      let result: HandlerResult;
      try {
        const at = now();
        result = handlers[operation]({
          body,
          identityId,
          now: at,
          admit: (bucket) => throttle.admit(bucket, at),
        });
      } catch (error) {
        if (error instanceof AcsError) {
          await sendError(error);
          return;
        }
        throw error;
      }
      await hooks.beforeRespond?.(operation, { identityId: result.identityId ?? identityId });
      await send(result.status, result.body);
    } catch (error) {
      log.error(
        { requestId, operation, err: error instanceof Error ? error.message : String(error) },
        "emulator failed",
      );
      if (!res.headersSent && !res.destroyed) {
        await sendError(
          new AcsError(500, "InternalServerError", "The emulator failed to answer this request."),
        );
      }
    }
  }

  const server = createServer((req, res) => {
    void handle(req, res).catch(() => res.destroy());
  });
  // Keep-alive sockets of SDK clients must not keep a closed emulator's process alive.
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? EMULATOR_DEFAULT_PORT, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  // A wildcard bind is reachable on loopback; a connection string needs an address a client can dial.
  const dialHost =
    host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  const endpoint = `http://${dialHost}:${port}/`;
  log.info(
    { endpoint, resourceId, throttle: options.throttle ?? "off", latencyMs },
    "ACS Identity emulator listening",
  );

  let closing: Promise<void> | undefined;
  return {
    endpoint,
    accessKey,
    resourceId,
    connectionString: `endpoint=${endpoint};accesskey=${accessKey}`,
    counters,
    hooks,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
