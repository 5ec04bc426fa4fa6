import type { FastifyBaseLogger, FastifyInstance, FastifyReply, RawServerDefault } from "fastify";
import type { IncomingMessage, ServerResponse } from "node:http";
import { isIP } from "node:net";
import type { Config } from "../../config.js";

/** `name`, `name:port`, `[v6]` or `[v6]:port`; anything else is no host at all. */
const HOST_HEADER = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::\d{1,5})?$/i;

/**
 * Whether a `Host` header names this gateway, for AUTH_MODE=none (every caller an admin), against
 * DNS rebinding: a web page whose own name was made to resolve to this machine calls the gateway
 * from the victim's browser as same-origin, and its `Host` is that name. Accepted, on any port:
 * `localhost`, any IP literal (rebinding needs a DNS name, so an IP literal is never an attacker's
 * page; this also lets a gateway exposed with HOST=0.0.0.0 be reached at the machine's address),
 * and `configuredHost` when it is a name rather than an address. Nothing else: no other DNS name,
 * and no request without a `Host`.
 */
export function isAllowedHost(host: string | undefined, configuredHost: string): boolean {
  const match = host === undefined ? null : HOST_HEADER.exec(host);
  if (match === null) {
    return false;
  }
  const name = match[1]!.toLowerCase();
  if (name.startsWith("[")) {
    return isIP(name.slice(1, -1)) === 6;
  }
  return (
    isIP(name) === 4 ||
    name === "localhost" ||
    (isIP(configuredHost) === 0 && name === configuredHost.toLowerCase())
  );
}

export const MISDIRECTED_MESSAGE =
  "This development gateway (AUTH_MODE=none) answers only requests addressed to localhost, an IP address or its HOST setting; use http://localhost:<port> (DNS names need AUTH_MODE=jwt).\n";

/** Whether the request announces a body (which a browser never sends with GET, HEAD or OPTIONS). */
function hasBody(headers: IncomingMessage["headers"]): boolean {
  const length = headers["content-length"];
  return headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

/**
 * With AUTH_MODE=none, refuses every request (all routes, `/healthz` and `/metrics` included) whose
 * `Host` is not one `isAllowedHost` accepts: 421 Misdirected Request, one line of plain text,
 * before any GraphQL work. A request without a body is refused at once, before any other route
 * hook (the explorer's page, CORS); one with a body once the body is read (its size and timeouts
 * still apply), so a client that stops mid-body gets the usual 408 rather than an answer to a
 * request it never finished. With AUTH_MODE=jwt nothing is added: a rebinding page has no bearer
 * token. Register on the root instance before the routes.
 */
export function registerHostCheck<Logger extends FastifyBaseLogger>(
  fastify: FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, Logger>,
  config: Readonly<Config>,
): void {
  if (config.auth.mode !== "none") {
    return;
  }
  const allowed = (request: { headers: IncomingMessage["headers"] }) =>
    isAllowedHost(request.headers.host, config.host);
  const refuse = (reply: FastifyReply) =>
    reply
      .code(421)
      .header("cache-control", "no-store")
      .type("text/plain; charset=utf-8")
      .send(MISDIRECTED_MESSAGE);
  // Callback-style: they run on every request, and an async hook costs each one a promise.
  fastify.addHook("onRequest", (request, reply, done) => {
    if (allowed(request) || hasBody(request.headers)) {
      done();
      return;
    }
    refuse(reply);
  });
  fastify.addHook("preValidation", (request, reply, done) => {
    if (allowed(request)) {
      done();
      return;
    }
    refuse(reply);
  });
}
