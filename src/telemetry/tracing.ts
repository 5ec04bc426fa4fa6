import { url } from "../config/url.js";
import {
  context,
  diag,
  DiagLogLevel,
  INVALID_SPAN_CONTEXT,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type AttributeValue,
  type Context,
  type Span,
} from "@opentelemetry/api";

/**
 * OpenTelemetry tracing, configured only by the standard `OTEL_*` variables. Off unless an OTLP
 * endpoint is set: every span call below then goes to the API's no-op tracer, which costs next to
 * nothing, so the code traces unconditionally and only `startTracing` decides whether it is kept.
 */

export const TRACER_NAME = "acs-identity-gateway";
export const DEFAULT_SERVICE_NAME = "acs-identity-gateway";

type Env = Record<string, string | undefined>;

export interface TracingSettings {
  /** Where spans go: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`. */
  url: string;
}

export class TracingConfigError extends Error {
  override readonly name = "TracingConfigError";
}

const value = (env: Env, name: string) => {
  const raw = env[name]?.trim();
  return raw === "" ? undefined : raw;
};

/**
 * `undefined` when tracing is off. Throws `TracingConfigError` for settings this exporter cannot
 * honour (a gRPC or protobuf protocol, a malformed URL): exporting JSON to a gRPC port would lose
 * every span silently, so the process refuses to start instead.
 */
export function tracingSettingsFromEnv(env: Env): TracingSettings | undefined {
  const specific = value(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  const general = value(env, "OTEL_EXPORTER_OTLP_ENDPOINT");
  if (value(env, "OTEL_SDK_DISABLED")?.toLowerCase() === "true") {
    return undefined;
  }
  if (value(env, "OTEL_TRACES_EXPORTER")?.toLowerCase() === "none") {
    return undefined;
  }
  if (specific === undefined && general === undefined) {
    return undefined;
  }
  for (const name of ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"]) {
    const protocol = value(env, name);
    if (protocol !== undefined && protocol !== "http/json") {
      throw new TracingConfigError(
        `${name}: only http/json is supported (the OTLP/HTTP JSON exporter); got ${JSON.stringify(protocol.slice(0, 32))}`,
      );
    }
    if (protocol !== undefined) {
      break; // the signal-specific setting wins over the general one
    }
  }
  const endpoint = specific ?? `${general!.replace(/\/+$/, "")}/v1/traces`;
  // The configuration's one URL parser (src/config/url.ts), with this setting's own wording.
  const parsed = url({
    protocols: ["http", "https"],
    problems: {
      notAUrl: `${specific !== undefined ? "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" : "OTEL_EXPORTER_OTLP_ENDPOINT"}: not a URL`,
      protocol: "the OTLP endpoint must be an http:// or https:// URL",
    },
  }).safeParse(endpoint);
  if (!parsed.success) {
    throw new TracingConfigError(parsed.error.issues[0]!.message);
  }
  return { url: endpoint };
}

/**
 * Whether a provider is registered. The token path runs through `withSpan` on every request, so
 * without tracing it skips even the no-op tracer's work (attribute filtering, context switching).
 */
let active = false;

/** Is tracing on in this process? Spans made while it is off are dropped unexamined. */
export function tracingActive(): boolean {
  return active;
}

const NO_SPAN = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

export interface Tracing {
  /** Export what is buffered now (tests; the shutdown path flushes by itself). */
  flush(): Promise<void>;
  /** Flush, stop exporting and unregister the global provider, propagator and context manager. */
  shutdown(): Promise<void>;
}

export interface StartTracingOptions {
  /** @default DEFAULT_SERVICE_NAME; `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` override it. */
  serviceName?: string;
  serviceVersion?: string;
  /**
   * Told the SDK's warnings and errors (e.g. the collector cannot be reached), so a broken export
   * is visible in the logs instead of silent. Messages only, cut to 300 characters.
   */
  onProblem?: (message: string) => void;
  /** The longest `shutdown` waits for the last export (an unreachable collector). @default 3000 */
  shutdownTimeoutMs?: number;
}

/**
 * Registers the global tracer provider (W3C `traceparent` + `baggage` propagation, async-local
 * context) when `env` names an OTLP endpoint; resolves to `undefined` otherwise. Sampling follows
 * `OTEL_TRACES_SAMPLER` (default `parentbased_always_on`); headers, timeout and compression follow
 * the exporter's own `OTEL_EXPORTER_OTLP_*` variables from the process environment.
 */
export function startTracing(
  env: Env,
  options: StartTracingOptions = {},
): Promise<Tracing | undefined> {
  return startTracingWith(tracingSettingsFromEnv(env), options);
}

/** `startTracing` with settings already read (the gateway reads them in config.ts). */
export async function startTracingWith(
  settings: TracingSettings | undefined,
  options: StartTracingOptions = {},
): Promise<Tracing | undefined> {
  if (!settings) {
    return undefined;
  }
  const { onProblem } = options;
  if (onProblem) {
    const report = (message: string, ...args: unknown[]) =>
      onProblem(
        [
          message,
          ...args.map((a) => (a instanceof Error ? a.message : typeof a === "string" ? a : "")),
        ]
          .filter(Boolean)
          .join(" ")
          .slice(0, 300),
      );
    const quiet = () => {};
    diag.setLogger(
      { error: report, warn: report, info: quiet, debug: quiet, verbose: quiet },
      { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
    );
  }
  const { registerProvider } = await import("./sdk.js");
  const provider = registerProvider({
    url: settings.url,
    serviceName: options.serviceName ?? DEFAULT_SERVICE_NAME,
    serviceVersion: options.serviceVersion,
  });
  active = true;
  let stopped: Promise<void> | undefined;
  return {
    flush: () => provider.forceFlush(),
    shutdown() {
      const timeoutMs = options.shutdownTimeoutMs ?? 3000;
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        timer.unref();
      });
      // A last export that fails (collector down) loses those spans; it must not turn a clean
      // stop into a failed one, so the failure is reported as a problem, not thrown.
      const flushed = provider.shutdown().catch((error: unknown) => {
        onProblem?.(
          `the last trace export failed: ${error instanceof Error ? error.message : String(error)}`,
        );
      });
      stopped ??= Promise.race([flushed, deadline]).finally(() => {
        clearTimeout(timer);
        active = false;
        trace.disable();
        propagation.disable();
        context.disable();
        if (onProblem) {
          diag.disable();
        }
      });
      return stopped;
    },
  };
}

/**
 * Attribute names that could carry a credential. Nothing in this code base sets such an attribute;
 * this is the net under that rule, so a later `withSpan(..., { token })` cannot leak one.
 */
const SECRET_NAME =
  /token|secret|password|passwd|authorization|bearer|credential|access.?key|connection.?string|cookie|signature/i;

/** The attributes minus any whose name looks like a credential, and minus undefined values. */
export function safeAttributes(attributes: Record<string, AttributeValue | undefined>): Attributes {
  const safe: Attributes = {};
  for (const [name, attribute] of Object.entries(attributes)) {
    if (attribute !== undefined && !SECRET_NAME.test(name)) {
      safe[name] = attribute;
    }
  }
  return safe;
}

export function tracer() {
  return trace.getTracer(TRACER_NAME);
}

/**
 * Marks a span failed without copying the error's message (an upstream message or a GraphQL
 * document fragment could hold anything): only the error's class name and, when it has one, its
 * `code`/`failure` go on the span.
 */
export function recordFailure(span: Span, error: unknown): void {
  const e = (error ?? {}) as { name?: unknown; code?: unknown; failure?: unknown };
  const type = typeof e.name === "string" ? e.name : "Error";
  span.setAttribute("error.type", type);
  const code =
    typeof e.failure === "string" ? e.failure : typeof e.code === "string" ? e.code : undefined;
  if (code !== undefined) {
    span.setAttribute("acsgw.error.code", code);
  }
  span.setStatus({ code: SpanStatusCode.ERROR, message: code ?? type });
}

export interface WithSpanOptions {
  kind?: SpanKind;
  /** The parent context. @default the active context */
  parent?: Context;
}

/**
 * Runs `fn` inside a new active span named `name`: spans started within it (ACS calls, Redis
 * commands) become its children. A throw marks the span failed (see `recordFailure`) and rethrows.
 */
export async function withSpan<T>(
  name: string,
  attributes: Record<string, AttributeValue | undefined>,
  fn: (span: Span) => Promise<T>,
  options: WithSpanOptions = {},
): Promise<T> {
  if (!active) {
    return fn(NO_SPAN);
  }
  const parent = options.parent ?? context.active();
  return tracer().startActiveSpan(
    name,
    { kind: options.kind ?? SpanKind.INTERNAL, attributes: safeAttributes(attributes) },
    parent,
    async (span) => {
      try {
        return await fn(span);
      } catch (error) {
        recordFailure(span, error);
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

/** The incoming W3C trace context (`traceparent`, `tracestate`, `baggage`) of an HTTP request. */
export function extractContext(headers: Record<string, string | string[] | undefined>): Context {
  return propagation.extract(ROOT_CONTEXT, headers, {
    keys: (carrier) => Object.keys(carrier),
    get: (carrier, key) => carrier[key.toLowerCase()],
  });
}
