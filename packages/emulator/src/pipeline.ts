import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "./logger.js";
import { API_SURFACES, resolveApiVersion, type ApiSurface } from "./api-versions.js";
import { AuthenticationError, type Authenticator } from "./authenticator.js";
import { createRequestContext, MAX_BODY_BYTES, readBody, type RequestContext } from "./context.js";
import { assertOperationInVersion, route } from "./dispatch.js";
import type { EntraAuthority } from "./entra.js";
import { EXCHANGE_OPERATIONS } from "./access-exchange.js";
import { AcsError, denied } from "./errors.js";
import { emulatorHealth, UNVERSIONED_OPERATIONS } from "./extras.js";
import type { Handler, HandlerResult } from "./handlers.js";
import type { EmulatorOperation } from "./options.js";
import type { Throttle } from "./throttle.js";
import type { TokenSigner } from "./token-signer.js";

/**
 * The emulator as a pipeline, in the order a request meets it (as Azurite layers its blob server):
 *   request context -> body -> dispatch -> api-version -> authentication -> handler,
 * with every refusal thrown as an AcsError and serialised by the context in one place.
 */
export interface PipelineDeps {
  now: () => number;
  latencyMs: number;
  /** An unknown api-version gets the newest surface instead of 400 (options.ts, `loose`). */
  loose: boolean;
  log: Logger;
  authenticator: Authenticator;
  entra: EntraAuthority;
  signer: TokenSigner;
  throttle: Throttle;
  handlers: Record<EmulatorOperation, Handler>;
  /** Counted after a 2xx answer is written. */
  counted(operation: EmulatorOperation): void;
  beforeRespond(
    operation: EmulatorOperation,
    info: RespondInfo,
  ): Promise<RespondOverride | void> | RespondOverride | void;
}

/**
 * What `hooks.beforeRespond` may return instead of nothing: the handler's work is done (identity
 * created, token minted, revoke applied), but the caller gets this instead of its answer, as when
 * the service or the network fails after the work: an ACS error answer (e.g. `{ status: 503 }`),
 * or `"drop"`, the connection closed without any answer. Neither is counted in `counters`.
 */
export type RespondOverride = "drop" | { status: number; code?: string; message?: string };

/** What `hooks.beforeRespond` learns of a request about to be answered. */
export interface RespondInfo {
  identityId?: string;
  /** The api-version asked for (none for the emulator's own routes: introspection, listing, reset). */
  apiVersion?: string;
  /** How the caller authenticated: the connection string's HMAC or an Entra bearer token. */
  auth: "hmac" | "bearer";
}

const NEWEST = API_SURFACES[API_SURFACES.length - 1]!;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function createPipeline(deps: PipelineDeps) {
  const { log } = deps;
  const delay = deps.latencyMs > 0 ? () => sleep(deps.latencyMs) : () => Promise.resolve();

  /** The authentication stage: HMAC (connection string) or, when Entra is on, a bearer token. */
  async function authenticate(
    ctx: RequestContext,
    body: Buffer,
    operation: EmulatorOperation,
  ): Promise<RespondInfo["auth"]> {
    const authorization = ctx.req.headers.authorization;
    if (typeof authorization === "string" && /^bearer\s/i.test(authorization)) {
      const failure = await deps.entra.checkBearer(authorization.slice(7).trim(), deps.now());
      if (failure) {
        log.warn(
          { requestId: ctx.requestId, operation, failure },
          "emulator refused a bearer token",
        );
        throw denied();
      }
      return "bearer";
    }
    try {
      deps.authenticator.verify({
        method: ctx.method,
        pathAndQuery: ctx.target,
        headers: ctx.req.headers,
        body,
      });
      return "hmac";
    } catch (error) {
      if (error instanceof AuthenticationError) {
        log.warn(
          { requestId: ctx.requestId, operation, failure: error.failure },
          "emulator refused a request's signature",
        );
        throw error.toAcsError();
      }
      throw error;
    }
  }

  async function run(ctx: RequestContext): Promise<void> {
    // Read (or drain) the body first: the content hash covers it, and a client still sending
    // would otherwise see a reset instead of the answer.
    const body = await readBody(ctx.req);
    if (body === undefined) {
      throw new AcsError(
        413,
        "RequestEntityTooLarge",
        `The request body exceeds the limit of ${MAX_BODY_BYTES} bytes.`,
        { headers: { Connection: "close" } },
      );
    }

    const matched = route(ctx.method, ctx.pathname);
    if (matched.kind === "jwks") {
      await ctx.send(200, deps.signer.jwks());
      return;
    }
    if (matched.kind === "health") {
      // Unsigned, like the JWKS: a container's health check has no key.
      await ctx.send(200, emulatorHealth());
      return;
    }
    if (matched.kind === "managed-identity") {
      await ctx.send(200, await deps.entra.issue(ctx.query, ctx.req.headers, deps.now()));
      return;
    }
    if (matched.kind === "authority") {
      // The test tenant's token authority (authority.ts): Entra's answers, not the ACS API's.
      const tenant = deps.entra.tenant;
      if (!tenant) {
        throw new AcsError(404, "NotFound", `No operation matches ${ctx.method} ${ctx.pathname}.`);
      }
      const { method, pathname, req } = ctx;
      const now = deps.now();
      const answer = await tenant.handle({ method, pathname, headers: req.headers, body, now });
      await ctx.send(answer.status, answer.body, answer.headers);
      return;
    }
    const { operation } = matched;

    // The api-version is checked before the signature so a client speaking another version learns
    // why even with a wrong key. The emulator's own routes (introspection, listing, reset) need none.
    let surface: ApiSurface = NEWEST;
    if (!UNVERSIONED_OPERATIONS.has(operation)) {
      surface = resolveApiVersion(ctx.query, deps.loose);
      assertOperationInVersion(matched, surface, ctx.method, ctx.pathname);
    }

    // The token exchanges authenticate with the Entra user's token itself: their handler checks it.
    const auth = EXCHANGE_OPERATIONS.has(operation)
      ? "bearer"
      : await authenticate(ctx, body, operation);

    let identityId: string | undefined;
    if (matched.identitySegment !== undefined) {
      try {
        identityId = decodeURIComponent(matched.identitySegment);
      } catch {
        identityId = matched.identitySegment; // not valid percent-encoding: treated as a foreign id
      }
    }
    const at = deps.now();
    const result: HandlerResult = await deps.handlers[operation]({
      body,
      identityId,
      surface,
      now: at,
      query: ctx.query,
      params: matched.params,
      authorization: ctx.req.headers.authorization,
      admit: (bucket) => deps.throttle.admit(bucket, at),
    });
    const override = await deps.beforeRespond(operation, {
      identityId: result.identityId ?? identityId,
      apiVersion: UNVERSIONED_OPERATIONS.has(operation) ? undefined : surface.version,
      auth,
    });
    if (override === "drop") {
      ctx.req.socket.destroy();
      return;
    }
    if (override) {
      throw new AcsError(
        override.status,
        override.code ?? "ServiceUnavailable",
        override.message ?? "The service failed after doing the work (test hook).",
      );
    }
    await ctx.send(result.status, result.body);
    if (result.status >= 200 && result.status < 300) {
      deps.counted(operation);
    }
    // Never the headers, the body or the query: they carry signatures and tokens.
    log.debug(
      { requestId: ctx.requestId, method: ctx.method, operation, status: result.status },
      "emulator request",
    );
  }

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ctx = createRequestContext(req, res, { now: deps.now, delay });
    try {
      await run(ctx);
    } catch (error) {
      if (error instanceof AcsError) {
        log.debug(
          { requestId: ctx.requestId, method: ctx.method, status: error.status, code: error.code },
          "emulator refusal",
        );
        if (!res.headersSent && !res.destroyed) {
          await ctx.sendError(error);
        }
        return;
      }
      log.error(
        { requestId: ctx.requestId, err: error instanceof Error ? error.message : String(error) },
        "emulator failed",
      );
      if (!res.headersSent && !res.destroyed) {
        await ctx.sendError(
          new AcsError(500, "InternalServerError", "The emulator failed to answer this request."),
        );
      }
    }
  };
}
