import { SpanKind, trace } from "@opentelemetry/api";
import type { Command } from "ioredis";
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

const traced = new WeakSet<Command>();

/**
 * A client span per Redis command sent while a span is active (`redis GET`, `redis EVALSHA`, ...),
 * with `db.system.name` and `db.operation.name` only: keys and arguments are never recorded (values
 * are encrypted tokens, keys name users). Commands outside any request (connection set-up, ready
 * checks, the readiness probe) make no span, so an idle gateway exports nothing.
 *
 * Patches `sendCommand` of this one client (single or cluster) in place and returns it. Wire it
 * where the shared client is created: `const redis = traceRedis(createRedisClient(...))`.
 */
export function traceRedis<T extends RedisClient>(client: T): T {
  const send = client.sendCommand.bind(client) as (command: Command, ...rest: unknown[]) => unknown;
  (client as { sendCommand: (command: Command, ...rest: unknown[]) => unknown }).sendCommand = (
    command,
    ...rest
  ) => {
    // A cluster resends a command after MOVED/ASK: one span for the whole command is enough.
    if (trace.getActiveSpan() === undefined || traced.has(command)) {
      return send(command, ...rest);
    }
    traced.add(command);
    const operation = command.name.toUpperCase();
    const span = tracer().startSpan(`redis ${operation}`, {
      kind: SpanKind.CLIENT,
      attributes: { "db.system.name": "redis", "db.operation.name": operation },
    });
    command.promise.then(
      () => span.end(),
      (error: unknown) => {
        recordFailure(span, error);
        span.end();
      },
    );
    return send(command, ...rest);
  };
  return client;
}
