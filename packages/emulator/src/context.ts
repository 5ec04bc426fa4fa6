import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { API_SUPPORTED_VERSIONS_HEADER } from "./api-versions.js";
import { type AcsError } from "./errors.js";

/**
 * Bodies above this are refused with 413. The largest legitimate body is a Teams exchange carrying an
 * Entra token (a few KB); 64 KiB leaves room without letting a client make the emulator buffer much.
 */
export const MAX_BODY_BYTES = 64 * 1024;
/** Past this, the emulator stops draining an oversized body and drops the connection. */
const DRAIN_LIMIT_BYTES = 8 * 1024 * 1024;

/** The request context stage: what every later stage reads, and the one way to answer. */
export interface RequestContext {
  readonly requestId: string;
  readonly method: string;
  /** The request target exactly as received (still-encoded path, `?`, query): it is signed. */
  readonly target: string;
  readonly pathname: string;
  readonly query: URLSearchParams;
  readonly req: IncomingMessage;
  /** Writes the answer with the headers the real service sends. */
  send(status: number, body?: unknown, extraHeaders?: Record<string, string>): Promise<void>;
  /** The error serialisation stage: every refusal leaves through here, in the ACS error shape. */
  sendError(error: AcsError): Promise<void>;
}

/** An MS-CV-like correlation vector: base64 of 16 random bytes, `.0` (the real header's shape). */
const correlationVector = () => `${randomBytes(16).toString("base64").replace(/=+$/, "")}.0`;

export function createRequestContext(
  req: IncomingMessage,
  res: ServerResponse,
  deps: { now: () => number; delay: () => Promise<void> },
): RequestContext {
  const started = performance.now();
  const requestId = randomUUID();
  const method = req.method ?? "GET";
  const target = req.url ?? "/";
  const queryAt = target.indexOf("?");
  const pathname = queryAt < 0 ? target : target.slice(0, queryAt);
  const query = new URLSearchParams(queryAt < 0 ? "" : target.slice(queryAt + 1));

  const send: RequestContext["send"] = async (status, body, extraHeaders = {}) => {
    await deps.delay();
    const headers: Record<string, string> = {
      "api-supported-versions": API_SUPPORTED_VERSIONS_HEADER,
      "MS-CV": correlationVector(),
      "x-ms-request-id": requestId,
      Date: new Date(deps.now()).toUTCString(),
      ...extraHeaders,
    };
    const clientRequestId = req.headers["x-ms-client-request-id"];
    if (typeof clientRequestId === "string") {
      headers["x-ms-client-request-id"] = clientRequestId;
    }
    let payload: Buffer | undefined;
    if (body !== undefined) {
      payload = Buffer.from(JSON.stringify(body), "utf8");
      headers["Content-Type"] =
        status < 400 ? "application/json; charset=utf-8" : "application/json";
      // The service sends Content-Length on its 2xx JSON answers and chunks its errors
      // (docs/acs-wire-facts.md, "Response headers seen").
      if (status < 400) {
        headers["Content-Length"] = String(payload.length);
      }
    }
    headers["X-Processing-Time"] = `${Math.round(performance.now() - started)}ms`;
    res.writeHead(status, headers);
    res.end(payload);
  };

  return {
    requestId,
    method,
    target,
    pathname,
    query,
    req,
    send,
    sendError: (error) => send(error.status, error.toBody(), error.options.headers),
  };
}

/** Reads at most MAX_BODY_BYTES; an oversized body is drained (so the client reads the 413) and reported as undefined. */
export function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
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
