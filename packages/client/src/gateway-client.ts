import { GatewayClientError } from "./errors.js";
import { persistedOperations, type OperationTypes } from "./generated/graphql.js";

export type OperationName = keyof OperationTypes;

export interface GatewayClientOptions {
  /** The gateway's GraphQL endpoint, e.g. `https://gateway.example.com/graphql`. */
  url: string | URL;
  /**
   * Headers for every call, e.g. `{ Authorization: "Bearer " + await getAppToken() }`. Called per
   * call, so a fresh app token is picked up.
   */
  getHeaders?: () => Record<string, string> | Promise<Record<string, string>>;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  /**
   * `"text"`: send the operation text with its sha256 (works with and without
   * PERSISTED_DOCUMENTS_ONLY). `"id"`: send the id alone, and the text only when the gateway asks
   * for it (`PERSISTED_QUERY_NOT_FOUND`, automatic persisted queries).
   * @default "text"
   */
  send?: "text" | "id";
}

/**
 * What the ACS SDKs pass to a `tokenRefresher` (`@azure/abort-controller`'s AbortSignalLike): a
 * DOM AbortSignal fits, and so does the SDK's own lighter object.
 */
export interface AbortSignalLike {
  readonly aborted: boolean;
  readonly reason?: unknown;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

export interface RequestOptions {
  signal?: AbortSignalLike;
}

export interface GatewayClient {
  /** Runs one of the shipped operations; throws a GatewayClientError carrying the gateway's code. */
  request<N extends OperationName>(
    operation: N,
    variables: OperationTypes[N]["variables"],
    options?: RequestOptions,
  ): Promise<OperationTypes[N]["result"]>;
}

interface GraphQLResponse {
  data?: unknown;
  errors?: { message?: unknown; extensions?: Record<string, unknown> }[];
}

/** The abort reason as thrown by fetch and the ACS SDKs (an `AbortError` when none was given). */
export function abortReason(signal: AbortSignalLike): unknown {
  return signal.reason ?? new DOMException("The operation was aborted.", "AbortError");
}

/**
 * fetch takes only a real AbortSignal: bridge an AbortSignalLike to one, with `release` to take
 * the bridge's listener off the SDK's signal once the call is over (the SDK keeps one signal for
 * many calls).
 */
function toAbortSignal(signal: AbortSignalLike | undefined): {
  signal: AbortSignal | undefined;
  release(): void;
} {
  if (signal === undefined || signal instanceof AbortSignal) {
    return { signal, release: () => {} };
  }
  const controller = new AbortController();
  if (signal.aborted) {
    controller.abort(abortReason(signal));
    return { signal: controller.signal, release: () => {} };
  }
  const onAbort = () => controller.abort(abortReason(signal));
  signal.addEventListener("abort", onAbort, { once: true });
  return { signal: controller.signal, release: () => signal.removeEventListener("abort", onAbort) };
}

/**
 * What `work` answers, or the abort reason as soon as `signal` aborts (for the app's own
 * `getHeaders`). Not started at all on a signal already aborted; once started, its outcome is
 * always handled, also when the abort won.
 */
function untilAborted<T>(work: () => T | Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal?.aborted) {
    return Promise.reject(signal.reason as unknown);
  }
  let running: Promise<T>;
  try {
    running = Promise.resolve(work());
  } catch (error) {
    return Promise.reject(error);
  }
  if (signal === undefined) {
    return running;
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as unknown);
    signal.addEventListener("abort", onAbort, { once: true });
    running.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** A small fetch-only GraphQL client for the gateway's shipped operations. */
export function createGatewayClient(options: GatewayClientOptions): GatewayClient {
  const url = new URL(options.url);
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new TypeError("url must be an http(s) URL");
  }
  const send = options.send ?? "text";

  async function post(body: unknown, given: AbortSignalLike | undefined): Promise<GraphQLResponse> {
    const bridge = toAbortSignal(given);
    try {
      return await exchange(body, bridge.signal);
    } finally {
      bridge.release();
    }
  }

  async function exchange(
    body: unknown,
    signal: AbortSignal | undefined,
  ): Promise<GraphQLResponse> {
    const doFetch = options.fetch ?? globalThis.fetch;
    // The app's own code (an MSAL call, say): its failure is the app's, rethrown as it is, and an
    // abort does not wait for it.
    // Called as a method of the options object, as before (a `getHeaders` may use `this`).
    const extra = options.getHeaders
      ? await untilAborted(() => options.getHeaders!(), signal)
      : undefined;
    const headers = new Headers(extra);
    headers.set("content-type", "application/json");
    headers.set("accept", "application/graphql-response+json, application/json");
    let response: Response;
    try {
      response = await doFetch(url, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (signal?.aborted) {
        throw abortReason(signal);
      }
      throw new GatewayClientError("NETWORK_ERROR", "The gateway could not be reached.", {
        cause: error,
      });
    }
    let json: GraphQLResponse;
    try {
      json = (await response.json()) as GraphQLResponse;
    } catch (error) {
      if (signal?.aborted) {
        throw abortReason(signal);
      }
      throw new GatewayClientError(
        "BAD_RESPONSE",
        `The gateway answered ${response.status} without a GraphQL result.`,
        { status: response.status, cause: error },
      );
    }
    const first = Array.isArray(json?.errors) ? json.errors[0] : undefined;
    if (first) {
      const extensions =
        typeof first.extensions === "object" && first.extensions !== null
          ? first.extensions
          : undefined;
      const code = typeof extensions?.code === "string" ? extensions.code : undefined;
      const retry = extensions?.retryAfterSeconds;
      throw new GatewayClientError(
        code ?? "INTERNAL_SERVER_ERROR",
        typeof first.message === "string" ? first.message : "The gateway answered an error.",
        {
          status: response.status,
          retryAfterSeconds: typeof retry === "number" && retry >= 0 ? retry : undefined,
          extensions,
        },
      );
    }
    if (typeof json?.data !== "object" || json.data === null) {
      throw new GatewayClientError("BAD_RESPONSE", "The gateway answered without data.", {
        status: response.status,
      });
    }
    return json;
  }

  async function request<N extends OperationName>(
    operation: N,
    variables: OperationTypes[N]["variables"],
    requestOptions: RequestOptions = {},
  ): Promise<OperationTypes[N]["result"]> {
    const document = persistedOperations[operation];
    if (!document) {
      throw new TypeError(`unknown operation ${String(operation)}`);
    }
    const { signal } = requestOptions;
    const extensions = { persistedQuery: { version: 1, sha256Hash: document.id } };
    const base = { operationName: operation, variables, extensions };
    if (send === "id") {
      try {
        return (await post(base, signal)).data as OperationTypes[N]["result"];
      } catch (error) {
        if (!(error instanceof GatewayClientError) || error.code !== "PERSISTED_QUERY_NOT_FOUND") {
          throw error;
        }
        // Automatic persisted queries: this gateway has not seen the text yet; register it.
      }
    }
    return (await post({ ...base, query: document.body }, signal))
      .data as OperationTypes[N]["result"];
  }

  return { request };
}
