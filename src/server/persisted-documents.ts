import type { KeyValueCache, KeyValueCacheSetOptions } from "@apollo/utils.keyvaluecache";
import { InMemoryLRUCache } from "@apollo/utils.keyvaluecache";
import type { FastifyReply, FastifyRequest } from "fastify";
import { LRUCache } from "lru-cache";
import type { RedisClient } from "../redis/index.js";
import manifestFile from "@acs-identity-gateway/client/persisted-documents.json" with { type: "json" };
import type { Logger } from "../logger.js";
import { isBrowserPageRequest } from "./landing-page.js";

/**
 * Automatic persisted queries (APQ): a client sends a query's sha256 first and its text only when
 * the gateway answers `PERSISTED_QUERY_NOT_FOUND`. The hash -> text entries live in the same Redis
 * as the token cache, so a text registered on one instance is known to every instance; without
 * Redis they stay in a bounded in-process LRU. Apollo registers a text only after it parsed and
 * validated.
 */
export const APQ_TTL_SECONDS = 24 * 60 * 60;
/** In-process bound: about 8 MiB of query text. */
export const APQ_MEMORY_MAX_BYTES = 8 * 1024 * 1024;
/** A longer text is executed but not registered (the shipped operations are under 1 KiB). */
export const APQ_MAX_TEXT_BYTES = 8 * 1024;
/**
 * New registrations accepted in Redis per UTC day, across all instances: distinct texts, so a text
 * still stored, or registered earlier the same UTC day, costs nothing when sent again. Sending a
 * stored text again never extends its life: an entry expires 24 hours after the registration that
 * stored it, and a text sent after that is registered, and charged, anew. So Redis holds at most
 * the texts registered in the last 24 hours, which span two UTC days: two days' budgets of texts
 * under the text cap (at most about 80 MiB), plus the two days' sets of registered hashes (under
 * 1 MiB each), whatever callers send.
 */
export const APQ_MAX_NEW_ENTRIES_PER_DAY = 5_000;

export interface ApqCacheDeps {
  redis: RedisClient | undefined;
  /** e.g. `acsgw:apq:v1:`; Apollo adds its own `apq:` and the hash. */
  keyPrefix: string;
  logger: Logger;
  /** @default APQ_MAX_TEXT_BYTES */
  maxTextBytes?: number;
  /** @default APQ_MAX_NEW_ENTRIES_PER_DAY */
  maxNewEntriesPerDay?: number;
  /** @default Date.now */
  now?: () => number;
  /**
   * Texts every instance knows without asking Redis, by Apollo's cache key (`apq:<sha256>`): the
   * client package's manifest. @default the manifest `npm run codegen` writes
   */
  trusted?: TrustedDocuments;
}

/** The prefix Apollo Server puts before a hash in its APQ cache's keys (`apq:<sha256>`). */
const APOLLO_KEY_PREFIX = "apq:";

/** How long an instance trusts its own memory that Redis holds a text (see `createApqCache`). */
export const APQ_MEMO_MS = 60 * 60 * 1000;

/**
 * The APQ store. Redis trouble never fails a request: a failed read is a miss (the client resends
 * the text) and a failed write is dropped. Entries expire APQ_TTL_SECONDS after they were stored,
 * however often their text is sent again; with the text cap and the daily registration budget that
 * bounds what Redis holds. A query in use is re-registered (and charged) by its client after expiry.
 */
export function createApqCache(deps: ApqCacheDeps): KeyValueCache<string> {
  const { redis, keyPrefix, logger } = deps;
  const now = deps.now ?? Date.now;
  const maxTextBytes = deps.maxTextBytes ?? APQ_MAX_TEXT_BYTES;
  const maxNewEntriesPerDay = deps.maxNewEntriesPerDay ?? APQ_MAX_NEW_ENTRIES_PER_DAY;
  const trusted = deps.trusted ?? loadTrustedDocuments();
  const tooLong = (value: string) => Buffer.byteLength(value) > maxTextBytes;
  /**
   * The client's own documents, by Apollo's key: its id alone is answered at once, and its text
   * sent with its id (the refresher's default, on every request) registers nothing.
   */
  const trustedText = (key: string) =>
    key.startsWith(APOLLO_KEY_PREFIX)
      ? trusted.get(key.slice(APOLLO_KEY_PREFIX.length))
      : undefined;
  if (!redis) {
    const memory = new InMemoryLRUCache<string>({ maxSize: APQ_MEMORY_MAX_BYTES });
    return {
      get: async (key) => trustedText(key) ?? memory.get(key),
      set: async (key, value, options) => {
        if (trustedText(key) === undefined && !tooLong(value)) {
          await memory.set(key, value, options);
        }
      },
      delete: (key) => memory.delete(key),
    };
  }
  /**
   * Texts this instance saw in Redis (read, or stored by it) in the last APQ_MEMO_MS, so a text
   * sent again and again costs Redis nothing: Apollo reads the store for every request that
   * sends only a hash, and writes it for every request that sends text and hash, and each would
   * be a second round trip beside the cache hit's. Always correct, because a key is the sha256
   * of its text; the memo only may outlive the Redis entry (by at most APQ_MEMO_MS), and then
   * this instance still answers the hash while it does not re-register the text: another
   * instance asked for the hash alone answers PERSISTED_QUERY_NOT_FOUND, and the client sends
   * the text there, as it would after any expiry. Bounded in bytes like the store without Redis.
   */
  const memo = new LRUCache<string, { text: string; until: number }>({
    maxSize: APQ_MEMORY_MAX_BYTES,
    sizeCalculation: (entry, key) => key.length + entry.text.length,
  });
  const remembered = (key: string): string | undefined => {
    const entry = memo.get(key);
    if (entry === undefined || entry.until <= now()) {
      return undefined;
    }
    return entry.text;
  };
  const remember = (key: string, text: string, ttlSeconds: number) =>
    memo.set(key, { text, until: now() + Math.min(APQ_MEMO_MS, ttlSeconds * 1000) });
  let warned = false;
  const warnOnce = (error: unknown) => {
    if (!warned) {
      warned = true;
      logger.warn(
        { err: error instanceof Error ? error.message : String(error) },
        "persisted-query store unavailable; clients will resend query text",
      );
    }
  };
  return {
    async get(key) {
      const known = trustedText(key) ?? remembered(key);
      if (known !== undefined) {
        return known;
      }
      if (redis.status !== "ready") {
        return undefined;
      }
      try {
        const text = (await redis.get(keyPrefix + key)) ?? undefined;
        if (text !== undefined) {
          remember(key, text, APQ_TTL_SECONDS);
        }
        return text;
      } catch (error) {
        warnOnce(error);
        return undefined;
      }
    },
    async set(key, value, options?: KeyValueCacheSetOptions) {
      if (trustedText(key) !== undefined || remembered(key) !== undefined) {
        return;
      }
      if (redis.status !== "ready") {
        return;
      }
      if (tooLong(value)) {
        return;
      }
      const ttl = Math.max(
        1,
        Math.round(Math.min(options?.ttl ?? APQ_TTL_SECONDS, APQ_TTL_SECONDS)),
      );
      try {
        // Apollo calls this for every request that sends the text with its hash (the refresher
        // does by default): a text still stored is left alone, its expiry included, and costs no
        // budget. Refreshing it would let a text that keeps being sent live forever, and Redis
        // grow by a day's budget every day.
        if ((await redis.exists(keyPrefix + key)) === 1) {
          warned = false;
          remember(key, value, APQ_TTL_SECONDS);
          return;
        }
        // The budget counts distinct texts: the day's set of registered hashes (SADD answers 0
        // for one registered earlier today, e.g. by another instance, or since evicted). An entry
        // that lived its 24 hours was stored on an earlier UTC day, so registering it again is
        // counted in today's set.
        const day = Math.floor(now() / 86_400_000);
        const registeredToday = `${keyPrefix}registered:${day}`;
        const replies = await redis
          .multi()
          .sadd(registeredToday, key)
          .scard(registeredToday)
          .expire(registeredToday, 2 * 86_400)
          .exec();
        const failed = replies?.find(([error]) => error)?.[0];
        if (!replies || failed) {
          throw failed ?? new Error("persisted-query budget: transaction aborted");
        }
        const added = replies[0]![1] === 1;
        const registered = Number(replies[1]![1]);
        if (added && registered > maxNewEntriesPerDay) {
          // Over budget: the query still runs; its client just keeps sending the text today.
          await redis.srem(registeredToday, key);
          return;
        }
        // NX: an entry another request or instance stored meanwhile keeps its own expiry.
        await redis.set(keyPrefix + key, value, "EX", ttl, "NX");
        remember(key, value, ttl);
        warned = false;
      } catch (error) {
        warnOnce(error);
      }
    },
    async delete(key) {
      memo.delete(key);
      try {
        await redis.del(keyPrefix + key);
        return true;
      } catch {
        return false;
      }
    },
  };
}

export interface ManifestOperation {
  id: string;
  name: string;
  type: string;
  body: string;
}

export interface PersistedQueryManifest {
  format: "apollo-persisted-query-manifest";
  version: 1;
  operations: ManifestOperation[];
}

/** The manifest `npm run codegen` writes beside the client's typed documents. */
export const TRUSTED_DOCUMENTS_MANIFEST = manifestFile as PersistedQueryManifest;

export interface TrustedDocuments {
  /** The operation text of a manifest id, or undefined. */
  get(id: string): string | undefined;
  readonly size: number;
}

export function loadTrustedDocuments(
  manifest: PersistedQueryManifest = TRUSTED_DOCUMENTS_MANIFEST,
): TrustedDocuments {
  if (manifest.format !== "apollo-persisted-query-manifest" || manifest.version !== 1) {
    throw new Error("the trusted-documents manifest is not an apollo-persisted-query-manifest v1");
  }
  const byId = new Map<string, string>();
  for (const operation of manifest.operations) {
    byId.set(operation.id, operation.body);
  }
  return { get: (id) => byId.get(id), size: byId.size };
}

/** The manifest's operation texts by operation name. */
export function operationsByName(
  manifest: PersistedQueryManifest = TRUSTED_DOCUMENTS_MANIFEST,
): Map<string, string> {
  return new Map(manifest.operations.map((operation) => [operation.name, operation.body]));
}

type Params = Record<string, unknown>;

function refuse(reply: FastifyReply, code: string, message: string): FastifyReply {
  return reply
    .code(400)
    .header("cache-control", "no-store")
    .type("application/json; charset=utf-8")
    .send({ errors: [{ message, extensions: { code } }] });
}

/** `extensions` arrives as an object in a POST body and as a JSON string in a GET query string. */
function extensionsOf(params: Params): Params | undefined {
  const raw = params.extensions;
  if (typeof raw === "string") {
    try {
      const parsed: unknown = JSON.parse(raw);
      return typeof parsed === "object" && parsed !== null ? (parsed as Params) : undefined;
    } catch {
      return undefined;
    }
  }
  return typeof raw === "object" && raw !== null ? (raw as Params) : undefined;
}

/**
 * PERSISTED_DOCUMENTS_ONLY=true, as Apollo Router's safelisting with `require_id`: a request names a
 * manifest operation by id (`documentId`, or `extensions.persistedQuery.sha256Hash`) and the gateway
 * substitutes the manifest's text. Query text from the client is refused before GraphQL parses it
 * (`PERSISTED_QUERY_ID_REQUIRED`), and so is an id outside the manifest
 * (`PERSISTED_QUERY_NOT_IN_LIST`). Runs as a Fastify preHandler, after the body is read.
 */
export function createTrustedDocumentsHandler(documents: TrustedDocuments) {
  return async function trustedDocumentsOnly(
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<void> {
    if (request.method !== "GET" && request.method !== "POST") {
      // CORS's catch-all OPTIONS route shares this context; it carries no operation.
      return;
    }
    if (isBrowserPageRequest(request)) {
      // Opening the endpoint in a browser: Sandbox (development) or a short note (production).
      return;
    }
    const params = (request.method === "GET" ? request.query : request.body) as unknown;
    if (typeof params !== "object" || params === null || Array.isArray(params)) {
      // Batches and bodies that are not one operation: nothing here may carry a trusted id.
      await refuse(
        reply,
        "PERSISTED_QUERY_ID_REQUIRED",
        "This gateway executes only trusted documents: send one operation's documentId.",
      );
      return;
    }
    const body = params as Params;
    const extensions = extensionsOf(body);
    const persisted = extensions?.persistedQuery as Params | undefined;
    const id =
      typeof body.documentId === "string"
        ? body.documentId
        : typeof persisted?.sha256Hash === "string"
          ? persisted.sha256Hash
          : undefined;
    if (id === undefined) {
      await refuse(
        reply,
        "PERSISTED_QUERY_ID_REQUIRED",
        "This gateway executes only trusted documents: send the operation's documentId instead of its text.",
      );
      return;
    }
    const text = documents.get(id);
    if (text === undefined) {
      await refuse(
        reply,
        "PERSISTED_QUERY_NOT_IN_LIST",
        "This operation is not in the gateway's trusted-documents list.",
      );
      return;
    }
    // The manifest's text replaces whatever the client sent; APQ must not see the id again.
    const rest: Params = { ...(extensions ?? {}) };
    delete rest.persistedQuery;
    const rewritten: Params = { ...body, query: text };
    delete rewritten.documentId;
    if (Object.keys(rest).length > 0) {
      rewritten.extensions = request.method === "GET" ? JSON.stringify(rest) : rest;
    } else {
      delete rewritten.extensions;
    }
    if (request.method === "GET") {
      // Apollo's Fastify integration reads GET parameters from the raw URL, not request.query.
      const search = new URLSearchParams();
      for (const [key, value] of Object.entries(rewritten)) {
        if (typeof value === "string") {
          search.set(key, value);
        }
      }
      request.raw.url = `${request.raw.url?.split("?")[0] ?? "/graphql"}?${search.toString()}`;
    } else {
      request.body = rewritten;
    }
  };
}
