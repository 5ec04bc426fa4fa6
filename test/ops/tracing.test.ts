import { once } from "node:events";
import { createServer, type Server } from "node:http";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import {
  safeAttributes,
  startTracing,
  tracingSettingsFromEnv,
  TracingConfigError,
  type Tracing,
} from "../../src/telemetry/tracing.js";
import { CREATE, ISSUE, ok, run, startGateway } from "../helpers/gateway.js";
import { freePort } from "../helpers/ports.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

/** The parts of an OTLP/HTTP JSON export these tests read. */
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
  status?: { code?: number };
}
interface OtlpExport {
  resourceSpans: {
    resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
    scopeSpans: { spans: OtlpSpan[] }[];
  }[];
}

/** A minimal OTLP/HTTP receiver: what a collector would get, as raw bodies and decoded spans. */
function startReceiver() {
  const bodies: string[] = [];
  const contentTypes: string[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      if (request.method === "POST" && request.url === "/v1/traces") {
        bodies.push(Buffer.concat(chunks).toString("utf8"));
        contentTypes.push(String(request.headers["content-type"]));
        response.writeHead(200, { "content-type": "application/json" }).end("{}");
      } else {
        response.writeHead(404).end();
      }
    });
  });
  return {
    server,
    bodies,
    contentTypes,
    spans(): OtlpSpan[] {
      return bodies.flatMap((body) =>
        (JSON.parse(body) as OtlpExport).resourceSpans.flatMap((rs) =>
          rs.scopeSpans.flatMap((ss) => ss.spans),
        ),
      );
    },
    resources() {
      return bodies.flatMap((body) =>
        (JSON.parse(body) as OtlpExport).resourceSpans.map((rs) => rs.resource),
      );
    },
  };
}

const attr = (span: OtlpSpan, key: string) => {
  const found = span.attributes?.find((a) => a.key === key)?.value;
  return found === undefined ? undefined : Object.values(found)[0];
};

let receiver: ReturnType<typeof startReceiver>;
let tracing: Tracing;
let redis: RedisProcess;
let app: App;
let url: string;

beforeAll(async () => {
  receiver = startReceiver();
  receiver.server.listen(0, "127.0.0.1");
  await once(receiver.server, "listening");
  const address = receiver.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  tracing = (await startTracing({
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}/`,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
  }))!;
  expect(tracing).toBeDefined();
  redis = await startRedis();
  app = await startGateway({ REDIS_URL: redis.url });
  url = await app.listen(0);
});

afterAll(async () => {
  await app?.close();
  await redis?.stop();
  await tracing?.shutdown();
  receiver?.server.close();
});

describe("OpenTelemetry tracing over OTLP/HTTP JSON", () => {
  it("exports the spans of one issueToken in the caller's trace, with no secret in them", async () => {
    const { createUser } = await ok<{ createUser: { id: string } }>(app, CREATE);
    await tracing.flush();
    receiver.bodies.length = 0;

    const traceId = randomBytes(16).toString("hex");
    const parentSpanId = randomBytes(8).toString("hex");
    const response = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        traceparent: `00-${traceId}-${parentSpanId}-01`,
      },
      body: JSON.stringify({
        query:
          "mutation Issue($userId: ID, $scopes: [TokenScope!]!) { issueToken(userId: $userId, scopes: $scopes) { token } }",
        variables: { userId: createUser.id, scopes: ["VOIP"] },
      }),
    });
    const body = (await response.json()) as { data: { issueToken: { token: string } } };
    const token = body.data.issueToken.token;
    expect(token.split(".")).toHaveLength(3);
    await tracing.flush();

    expect(receiver.contentTypes.every((type) => type.startsWith("application/json"))).toBe(true);
    const spans = receiver.spans().filter((span) => span.traceId === traceId);
    const byName = (name: string) => {
      const found = spans.filter((span) => span.name === name);
      expect(found, `${name} in ${spans.map((s) => s.name).join(", ")}`).toHaveLength(1);
      return found[0]!;
    };

    // The request continues the caller's trace: its server span's parent is the incoming span.
    const server = byName("POST /graphql");
    expect(server.parentSpanId).toBe(parentSpanId);
    expect(server.kind).toBe(2); // SERVER
    expect(Number(attr(server, "http.response.status_code"))).toBe(200);

    const operation = byName("mutation Issue");
    expect(operation.parentSpanId).toBe(server.spanId);
    expect(attr(operation, "graphql.operation.type")).toBe("mutation");
    expect(attr(operation, "graphql.operation.name")).toBe("Issue");

    const lookup = byName("token-cache getOrMint");
    expect(lookup.parentSpanId).toBe(operation.spanId);
    expect(attr(lookup, "acsgw.cache.hit")).toBe(false);

    const acs = byName("acs issueToken");
    expect(acs.parentSpanId).toBe(lookup.spanId);
    expect(acs.kind).toBe(3); // CLIENT
    expect(Number(attr(acs, "http.response.status_code"))).toBe(200);
    expect(attr(acs, "server.address")).toBe(new URL(app.acs.endpoint).host);

    // The cache's Redis commands, as children of the request's spans.
    const redisSpans = spans.filter((span) => span.name.startsWith("redis "));
    expect(redisSpans.length).toBeGreaterThan(0);
    const ids = new Set(spans.map((span) => span.spanId));
    for (const span of redisSpans) {
      expect(ids.has(span.parentSpanId!)).toBe(true);
      expect(attr(span, "db.system.name")).toBe("redis");
    }

    // Nothing a collector receives holds the token, the access key, or a credential's name.
    const exported = receiver.bodies.join("\n");
    expect(exported).not.toContain(token);
    expect(exported).not.toContain(token.split(".")[2]!);
    expect(exported).not.toContain(app.acs.accessKey);
    expect(exported).not.toMatch(/bearer|authorization|accesskey|traceparent/i);
    expect(exported).not.toContain(createUser.id);
    for (const span of spans) {
      for (const { key } of span.attributes ?? []) {
        expect(key).not.toMatch(/token|secret|key|password|authorization/i);
      }
    }
  });

  it("names the service acs-identity-gateway unless OTEL_SERVICE_NAME says otherwise", () => {
    const names = receiver
      .resources()
      .map((resource) => resource?.attributes?.find((a) => a.key === "service.name")?.value);
    expect(names.length).toBeGreaterThan(0);
    expect(names.every((name) => name?.stringValue === "acs-identity-gateway")).toBe(true);
  });

  it("starts a new trace for a request without traceparent", async () => {
    receiver.bodies.length = 0;
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "query Me { me { subject } }" }),
    });
    expect(response.status).toBe(200);
    await tracing.flush();
    const server = receiver.spans().find((span) => span.name === "POST /graphql");
    expect(server).toBeDefined();
    expect(server!.parentSpanId ?? "").toBe("");
    const operation = receiver.spans().find((span) => span.name === "query Me");
    expect(operation?.traceId).toBe(server!.traceId);
  });

  it("marks the operation failed with the error's code, not its message", async () => {
    receiver.bodies.length = 0;
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        query: "mutation Revoke($userId: ID!) { revokeTokens(userId: $userId) { revokedAt } }",
        variables: { userId: "not-an-acs-id" },
      }),
    });
    expect(response.status).toBe(200);
    await tracing.flush();
    const operation = receiver.spans().find((span) => span.name === "mutation Revoke");
    expect(operation?.status?.code).toBe(2); // ERROR
    expect(attr(operation!, "acsgw.graphql.error_codes")).toEqual({
      values: [{ stringValue: "BAD_USER_INPUT" }],
    });
    expect(receiver.bodies.join("\n")).not.toContain("not-an-acs-id");
  });
});

describe("ACS call spans when ACS cannot be reached", () => {
  it("records each attempt as a failed client span, and the operation with the client's code", async () => {
    const closedPort = await freePort();
    const unreachable = await startGateway({
      COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=http://127.0.0.1:${closedPort}/;accesskey=${Buffer.alloc(32, 1).toString("base64")}`,
    });
    try {
      receiver.bodies.length = 0;
      const userId =
        "8:acs:5c6fe286-6348-4310-9cd1-6980234eb6c2_00000000-0000-0000-0000-00000000000a";
      const result = await run(unreachable, ISSUE, { userId, scopes: ["CHAT"] });
      expect(result.errors?.[0]?.extensions?.code).toBe("UPSTREAM_UNAVAILABLE");
      await tracing.flush();

      const attempts = receiver.spans().filter((span) => span.name === "acs issueToken");
      // The provider's one retry after a network error: two HTTP attempts, two spans.
      expect(
        attempts
          .map((span) => attr(span, "acsgw.attempt"))
          .map(Number)
          .sort(),
      ).toEqual([0, 1]);
      for (const span of attempts) {
        expect(span.status?.code).toBe(2); // ERROR
        expect(attr(span, "acsgw.error.code")).toBe("unavailable");
        expect(attr(span, "http.response.status_code")).toBeUndefined();
      }
      const operation = receiver.spans().find((span) => span.name === "mutation Issue");
      expect(operation?.traceId).toBe(attempts[0]!.traceId);
      expect(attr(operation!, "acsgw.graphql.error_codes")).toEqual({
        values: [{ stringValue: "UPSTREAM_UNAVAILABLE" }],
      });
      expect(receiver.bodies.join("\n")).not.toContain(userId);
    } finally {
      await unreachable.close();
    }
  });
});

describe("span attributes", () => {
  it("drops any attribute whose name looks like a credential, and undefined values", () => {
    expect(
      safeAttributes({
        "acsgw.cache.hit": true,
        "acsgw.cache.scopes": "voip",
        token: "eyJ...",
        "acs.accessKey": "k",
        "acs.access_key": "k",
        "http.request.header.authorization": "Bearer x",
        "router.secret": "s",
        connectionString: "endpoint=...",
        "user.password": "p",
        "acsgw.attempt": undefined,
      }),
    ).toEqual({ "acsgw.cache.hit": true, "acsgw.cache.scopes": "voip" });
  });
});

describe("tracing settings", () => {
  it("is off unless an OTLP endpoint is set, or when the SDK is disabled", async () => {
    expect(tracingSettingsFromEnv({})).toBeUndefined();
    expect(tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "" })).toBeUndefined();
    expect(
      tracingSettingsFromEnv({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
        OTEL_SDK_DISABLED: "true",
      }),
    ).toBeUndefined();
    expect(
      tracingSettingsFromEnv({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
        OTEL_TRACES_EXPORTER: "none",
      }),
    ).toBeUndefined();
    expect(await startTracing({})).toBeUndefined();
  });

  it("appends /v1/traces to the general endpoint and takes the traces endpoint as it is", () => {
    expect(
      tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }),
    ).toEqual({
      url: "http://collector:4318/v1/traces",
    });
    expect(
      tracingSettingsFromEnv({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://ignored:4318",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://collector.example/otlp/traces",
      }),
    ).toEqual({ url: "https://collector.example/otlp/traces" });
  });

  it("refuses a protocol the JSON exporter cannot speak, and a malformed endpoint", () => {
    expect(() =>
      tracingSettingsFromEnv({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4317",
        OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      }),
    ).toThrow(TracingConfigError);
    expect(() =>
      tracingSettingsFromEnv({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/protobuf",
      }),
    ).toThrow(/OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: only http\/json/);
    expect(() => tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" })).toThrow(
      TracingConfigError,
    );
    expect(() =>
      tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "not a url" }),
    ).toThrow(/OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: not a URL/);
  });
});
