import { subscribe } from "node:diagnostics_channel";
import { SpanKind, trace, type Span } from "@opentelemetry/api";
import type { CommandTraceContext } from "ioredis";
import type { TokenCache } from "../cache/token-cache.js";
import type { RedisClient } from "../redis/index.js";
import { wrapMethods } from "../wrap-methods.js";
import { recordFailure, tracer, tracingActive, withSpan } from "./tracing.js";

/**
 * Wraps a TokenCache so each call is a span: `token-cache getOrMint` (the cache lookup; with
 * `acsgw.cache.hit`), `token-cache invalidateUser`, `token-cache isDeleted`. A minted token's ACS
 * call runs inside the lookup's span and so shows as its child. Only the outcome is recorded: no
 * user id, no key, no token.
 *
 * Wire it where the cache is created: `const cache = traceTokenCache(createTokenCache(...))`.
 */
export function traceTokenCache(cache: TokenCache): TokenCache {
  return {
    // Any other method (a new one too) is a plain `token-cache <name>` span; `isReady` (the
    // readiness probe) and `close` are not traced.
    ...wrapMethods(cache, (name, call) => withSpan(`token-cache ${name}`, {}, call), {
      except: ["isReady", "close"],
    }),
    // Explicit below, as each records its own attributes. The token path: with tracing off,
    // straight through, without building the span's attributes or the two promise layers of
    // `withSpan` around the lookup.
    getOrMint: (key, mint) =>
      !tracingActive()
        ? cache.getOrMint(key, mint)
        : withSpan(
            "token-cache getOrMint",
            { "acsgw.cache.scopes": key.scopes.join(" ") },
            async (span) => {
              const result = await cache.getOrMint(key, mint);
              span.setAttribute("acsgw.cache.hit", result.cached);
              return result;
            },
          ),
    invalidateUser: (userId, upstream, options) =>
      withSpan(
        "token-cache invalidateUser",
        { "acsgw.cache.tombstone": options?.tombstone ?? false },
        () => cache.invalidateUser(userId, upstream, options),
      ),
    isDeleted: (userId) =>
      withSpan("token-cache isDeleted", {}, async (span) => {
        const deleted = await cache.isDeleted(userId);
        span.setAttribute("acsgw.cache.deleted", deleted);
        return deleted;
      }),
  };
}

/** The span of each traced command, by the context object ioredis publishes for the command. */
const commandSpans = new WeakMap<object, Span>();
let subscribed = false;

/**
 * Subscribers of ioredis's public `ioredis:command` tracing channel (its README, "Diagnostics
 * Channel"). ioredis publishes each command once, when it writes it to the socket, through
 * `TracingChannel#tracePromise`: `start` there and then, `asyncEnd` when the reply or the failure
 * arrives (a failure sets the context's `error` first). With no subscriber ioredis skips all of it.
 */
const commandHandlers = {
  start(message: unknown) {
    const command = message as CommandTraceContext;
    // Published synchronously inside the caller's call (`redis.get(...)` -> sendCommand), so
    // the active span is the caller's.
    if (trace.getActiveSpan() === undefined) {
      return;
    }
    const operation = command.command.toUpperCase();
    commandSpans.set(
      command,
      tracer().startSpan(`redis ${operation}`, {
        kind: SpanKind.CLIENT,
        attributes: { "db.system.name": "redis", "db.operation.name": operation },
      }),
    );
  },
  asyncEnd(message: unknown) {
    const command = message as CommandTraceContext & { error?: unknown };
    const span = commandSpans.get(command);
    if (span === undefined) {
      return;
    }
    commandSpans.delete(command);
    if ("error" in command) {
      recordFailure(span, command.error);
    }
    span.end();
  },
};

/**
 * A client span per Redis command sent while a span is active (`redis GET`, `redis EVALSHA`, ...),
 * with `db.system.name` and `db.operation.name` only: keys and arguments are never recorded (values
 * are encrypted tokens, keys name users). Commands outside any request (connection set-up, ready
 * checks, the readiness probe) make no span, so an idle gateway exports nothing.
 *
 * Through ioredis's public `ioredis:command` diagnostics channel, not a patch: this used to replace
 * the client's private `sendCommand`. The channel is process-wide, so every connection is traced,
 * including the revoke connection the token cache makes for itself (`createRevokeConnection`),
 * which the per-client patch missed; single and cluster alike, pipelines and MULTI command by
 * command, and a command a Cluster resends after MOVED/ASK once (ioredis publishes each command
 * once). One difference from the patch: ioredis publishes a command when it writes it, so a
 * command that fails before any write (no connection: no offline queue) makes no span; one that
 * times out or gets an error reply makes a failed one. test/telemetry/redis-spans.test.ts pins
 * this against the installed ioredis.
 *
 * Subscribes the first time it is called while tracing is on (main.ts starts tracing before it
 * creates the app, and so the clients); with tracing off it subscribes to nothing, and ioredis
 * then does no tracing work at all per command. Returns `client` unchanged, so it is wired where
 * the client is created: `const redis = traceRedis(createRedisClient(...))`.
 */
export function traceRedis<T extends RedisClient>(client: T): T {
  if (!subscribed && tracingActive()) {
    subscribed = true;
    subscribe("tracing:ioredis:command:start", commandHandlers.start);
    subscribe("tracing:ioredis:command:asyncEnd", commandHandlers.asyncEnd);
  }
  return client;
}
