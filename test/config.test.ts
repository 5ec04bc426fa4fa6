import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseConnectionString } from "../src/config.js";
import { PRODUCTION_SETTINGS } from "./helpers/gateway.js";

const KEY = Buffer.alloc(32, 7).toString("base64");
const ACS = `endpoint=https://contoso.communication.azure.com/;accesskey=${KEY}`;

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error("expected a ConfigError");
}

describe("configuration", () => {
  it("starts with no settings at all: embedded emulator, memory cache, loopback port 4000, auth none", () => {
    const config = loadConfig({});
    expect(config.acs).toBeUndefined();
    expect(config.redis).toEqual({ mode: "memory" });
    expect(config.port).toBe(4000);
    // Every caller is an admin here: only this machine may call.
    expect(config.host).toBe("127.0.0.1");
    expect(config.auth).toEqual({ mode: "none" });
    expect(config.tokenMinRemainingMinutes).toBe(15);
    expect(config.redisKeyPrefix).toBe("acsgw:");
    expect(Object.isFrozen(config)).toBe(true);
  });

  it("listens where HOST says, and on every interface in production when it is unset", () => {
    expect(loadConfig({ HOST: "0.0.0.0" }).host).toBe("0.0.0.0");
    expect(loadConfig({ HOST: "" }).host).toBe("127.0.0.1");
    expect(loadConfig({ NODE_ENV: "test" }).host).toBe("127.0.0.1");
    const production = { ...PRODUCTION_SETTINGS, COMMUNICATION_SERVICES_CONNECTION_STRING: ACS };
    expect(loadConfig(production).host).toBe("0.0.0.0");
    expect(loadConfig({ ...production, HOST: "127.0.0.1" }).host).toBe("127.0.0.1");
  });

  it("decides once whether the emulator is embedded, and checks its settings only then", () => {
    // No ACS settings: embedded, on a free port unless ACS_EMULATOR_PORT says otherwise.
    expect(loadConfig({}).embeddedEmulator).toEqual({ port: 0 });
    expect(loadConfig({ ACS_EMULATOR_PORT: "10600" }).embeddedEmulator).toMatchObject({
      port: 10600,
    });
    // Its settings are part of the one list of problems...
    expect(problems({ ACS_EMULATOR_PORT: "abc", PORT: "x" })).toEqual([
      expect.stringMatching(/^PORT: /),
      expect.stringMatching(/ACS_EMULATOR_PORT/),
    ]);
    // ...and mean nothing with a real resource: no emulator, nothing to refuse.
    const entra = loadConfig({
      ACS_ENDPOINT: "https://contoso.communication.azure.com/",
      ACS_EMULATOR_PORT: "abc",
    });
    expect(entra.embeddedEmulator).toBeUndefined();
    expect(
      loadConfig({ COMMUNICATION_SERVICES_CONNECTION_STRING: ACS, ACS_EMULATOR_PORT: "abc" })
        .embeddedEmulator,
    ).toBeUndefined();
    // The embedded one never takes the standalone modes, and does not even read them: a compose
    // file may hand the gateway the emulator container's certificate paths.
    expect(loadConfig({ ACS_EMULATOR_ENTRA: "on" }).embeddedEmulator).not.toHaveProperty("entra");
    const standaloneOnly = loadConfig({
      ACS_EMULATOR_TLS_CERT: "/run/secrets/missing-cert.pem",
      ACS_EMULATOR_ENTRA: "sometimes",
      ACS_EMULATOR_LOOSE: "1",
    }).embeddedEmulator;
    expect(standaloneOnly).toEqual({ port: 0, loose: true });
  });

  it("reads the OTLP trace settings, the Azure authority host and the crash-test hook with the rest", () => {
    expect(loadConfig({}).tracing).toBeUndefined();
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" }).tracing).toEqual({
      url: "http://collector:4318/v1/traces",
    });
    expect(
      problems({
        OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4317",
      }),
    ).toEqual([expect.stringMatching(/^OTEL_EXPORTER_OTLP_PROTOCOL: only http\/json/)]);
    expect(
      loadConfig({ AZURE_AUTHORITY_HOST: "https://127.0.0.1:10501" }).entraCredentialOptions,
    ).toEqual({ disableInstanceDiscovery: true });
    expect(
      loadConfig({ AZURE_AUTHORITY_HOST: "https://login.microsoftonline.com" })
        .entraCredentialOptions,
    ).toEqual({});
    expect(loadConfig({ AZURE_AUTHORITY_HOST: "" }).entraCredentialOptions).toEqual({});
    // The authority receives the gateway's credentials: the one URL parser, TLS or loopback.
    expect(problems({ AZURE_AUTHORITY_HOST: "login.example" })).toEqual([
      "AZURE_AUTHORITY_HOST: not a URL",
    ]);
    expect(problems({ AZURE_AUTHORITY_HOST: "http://login.example" })).toEqual([
      "AZURE_AUTHORITY_HOST: must be https:// (the authority receives the gateway's credentials)",
    ]);
    expect(loadConfig({ ACSGW_TEST_EXIT_AFTER_STEP: "recorded" }).testExitAfterStep).toBe(
      "recorded",
    );
    expect(problems({ ACSGW_TEST_EXIT_AFTER_STEP: "later" })).toEqual([
      "ACSGW_TEST_EXIT_AFTER_STEP: must be reserved or recorded",
    ]);
    expect(
      loadConfig({ ...PRODUCTION_SETTINGS, ACSGW_TEST_EXIT_AFTER_STEP: "recorded" })
        .testExitAfterStep,
    ).toBeUndefined();
  });

  it("treats empty strings as unset", () => {
    const config = loadConfig({
      PORT: "",
      REDIS_URL: "",
      COMMUNICATION_SERVICES_CONNECTION_STRING: "",
    });
    expect(config.port).toBe(4000);
    expect(config.redis.mode).toBe("memory");
    expect(config.acs).toBeUndefined();
  });

  it("parses an ACS connection string with keys in any case", () => {
    expect(
      parseConnectionString(`Endpoint=https://x.communication.azure.com/;AccessKey=${KEY}`),
    ).toEqual({
      endpoint: "https://x.communication.azure.com/",
      accessKey: KEY,
    });
  });

  it("reports every problem at once, and never echoes the connection string", () => {
    const secret = "endpoint=ftp://example.com/;accesskey=SECRETSECRETSECRETSECRET";
    const list = problems({
      PORT: "http",
      TOKEN_MIN_REMAINING_MINUTES: "10",
      AUTH_MODE: "jwt",
      REDIS_URL: "http://cache",
      COMMUNICATION_SERVICES_CONNECTION_STRING: secret,
    });
    expect(list.length).toBeGreaterThanOrEqual(2);
    const joined = list.join("\n");
    expect(joined).toContain("PORT");
    expect(joined).toContain("TOKEN_MIN_REMAINING_MINUTES");
    expect(joined).not.toContain("SECRETSECRET");
  });

  it("lists every missing jwt setting and the bad values together", () => {
    const list = problems({
      AUTH_MODE: "jwt",
      REDIS_URL: "http://cache",
      TOKEN_CACHE_ENCRYPTION_KEY: "c2hvcnQ=",
    });
    expect(list).toEqual(
      expect.arrayContaining([
        expect.stringContaining("AUTH_JWKS_URL"),
        expect.stringContaining("AUTH_ISSUER"),
        expect.stringContaining("AUTH_AUDIENCE"),
        expect.stringContaining("REDIS_URL"),
        expect.stringContaining("TOKEN_CACHE_ENCRYPTION_KEY"),
      ]),
    );
  });

  it("reports a bad number together with every cross-setting problem (one bad value hides none)", () => {
    const list = problems({
      PORT: "abc",
      REDIS_URL: "http://cache",
      AUTH_MODE: "jwt",
      ROUTER_SECRET: "short",
    });
    expect(list).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^PORT: /),
        expect.stringMatching(/^REDIS_URL: /),
        expect.stringMatching(/^AUTH_JWKS_URL: /),
        expect.stringMatching(/^AUTH_ISSUER: /),
        expect.stringMatching(/^AUTH_AUDIENCE: /),
        expect.stringMatching(/^ROUTER_SECRET: /),
      ]),
    );
  });

  it.each(["prod", "Production", "production ", "PRODUCTION", "staging"])(
    "refuses NODE_ENV=%j instead of starting in development mode",
    (value) => {
      expect(problems({ NODE_ENV: value })).toEqual([
        "NODE_ENV: must be development, production or test (exactly, in lower case)",
      ]);
    },
  );

  it("refuses an unknown value of any enumerated setting", () => {
    const list = problems({ AUTH_MODE: "JWT", LOG_LEVEL: "verbose", ACS_ALLOW_INSECURE: "yes" });
    expect(list.map((p) => p.split(":")[0]).sort()).toEqual([
      "ACS_ALLOW_INSECURE",
      "AUTH_MODE",
      "LOG_LEVEL",
    ]);
  });

  it("says what range a number must be in", () => {
    expect(problems({ PORT: "70000" })).toEqual(["PORT: must be from 0 to 65535"]);
    expect(problems({ PORT: "4000.5" })).toEqual(["PORT: must be a whole number"]);
    expect(problems({ RATE_LIMIT_ACS_CALLS_PER_MINUTE: "0" })[0]).toContain("must be from 1 to");
    expect(problems({ RATE_LIMIT_TOKENS_PER_MINUTE: "60" })[0]).toMatch(
      /^RATE_LIMIT_TOKENS_PER_MINUTE: renamed: .*RATE_LIMIT_ACS_CALLS_PER_MINUTE/,
    );
  });

  it("requires the minimum remaining validity to be above the SDKs' 10-minute refresh margin", () => {
    expect(problems({ TOKEN_MIN_REMAINING_MINUTES: "10" })[0]).toContain("above 10");
    expect(loadConfig({ TOKEN_MIN_REMAINING_MINUTES: "10.5" }).tokenMinRemainingMinutes).toBe(10.5);
  });

  it("refuses an http:// ACS endpoint off loopback unless ACS_ALLOW_INSECURE=true", () => {
    const insecure = `endpoint=http://acs.internal:8080/;accesskey=${KEY}`;
    expect(problems({ COMMUNICATION_SERVICES_CONNECTION_STRING: insecure })[0]).toContain(
      "ACS_ALLOW_INSECURE",
    );
    expect(
      loadConfig({ COMMUNICATION_SERVICES_CONNECTION_STRING: insecure, ACS_ALLOW_INSECURE: "true" })
        .acs?.endpoint,
    ).toBe("http://acs.internal:8080/");
    expect(
      loadConfig({
        COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=http://127.0.0.1:10500/;accesskey=${KEY}`,
      }).acs,
    ).toBeDefined();
  });

  it("refuses insecure defaults in production: no emulator, no AUTH_MODE=none", () => {
    const list = problems({ NODE_ENV: "production" });
    expect(list.some((p) => p.startsWith("COMMUNICATION_SERVICES_CONNECTION_STRING"))).toBe(true);
    expect(list.some((p) => p.startsWith("AUTH_MODE"))).toBe(true);
    const ok = loadConfig({
      ...PRODUCTION_SETTINGS,
      COMMUNICATION_SERVICES_CONNECTION_STRING: ACS,
    });
    expect(ok.production).toBe(true);
  });

  it("parses Redis Cluster nodes and refuses both Redis modes at once", () => {
    expect(loadConfig({ REDIS_CLUSTER_NODES: "10.0.0.1:7000, redis-2:7001" }).redis).toEqual({
      mode: "cluster",
      nodes: [
        { host: "10.0.0.1", port: 7000 },
        { host: "redis-2", port: 7001 },
      ],
    });
    expect(problems({ REDIS_CLUSTER_NODES: "a:1", REDIS_URL: "redis://b" })[0]).toContain(
      "not both",
    );
    expect(problems({ REDIS_CLUSTER_NODES: "nohost" })[0]).toContain("host:port");
  });

  it("accepts a 32-byte base64 cache encryption key", () => {
    expect(loadConfig({ TOKEN_CACHE_ENCRYPTION_KEY: KEY }).tokenCacheEncryptionKey?.length).toBe(
      32,
    );
  });

  it("runs no emulator with ACS_ENDPOINT or a connection string, so bad emulator settings cannot stop the gateway", () => {
    const badEmulator = {
      ACS_EMULATOR_PORT: "abc",
      ACS_EMULATOR_LATENCY_MS: "slow",
      ACS_EMULATOR_TLS_CERT: "/nonexistent/cert.pem",
    };
    const entra = loadConfig({
      ...PRODUCTION_SETTINGS,
      COMMUNICATION_SERVICES_CONNECTION_STRING: "",
      ACS_ENDPOINT: "https://contoso.communication.azure.com",
      ...badEmulator,
    });
    expect(entra.embeddedEmulator).toBeUndefined();
    expect(entra.acs).toBeUndefined();
    expect(entra.acsEntraEndpoint).toBe("https://contoso.communication.azure.com/");
    const development = loadConfig({
      ACS_ENDPOINT: "https://contoso.communication.azure.com/",
      ...badEmulator,
    });
    expect(development.embeddedEmulator).toBeUndefined();
    expect(loadConfig({ ...PRODUCTION_SETTINGS, ...badEmulator }).embeddedEmulator).toBeUndefined();
    // Without either, the same settings stop it: one line per problem. The TLS certificate is
    // the standalone emulator's, which the embedded one does not read.
    expect(problems(badEmulator)).toEqual([
      "ACS_EMULATOR_PORT: must be a whole number from 0 to 65535",
      "ACS_EMULATOR_LATENCY_MS: must be a whole number from 0 to 60000",
    ]);
  });

  it("refuses a user name or password in a URL the gateway fetches, without echoing it", () => {
    const secret = "whsec_" + Buffer.alloc(32, 1).toString("base64");
    const found = problems({
      WEBHOOK_URLS: "https://hooks.example/ok, https://ops:s3cret@hooks.example/events",
      WEBHOOK_SECRET: secret,
      AUTH_MODE: "jwt",
      AUTH_ISSUER: "https://issuer.example/",
      AUTH_AUDIENCE: "api://gateway",
      AUTH_JWKS_URL: "https://reader:s3cret@issuer.example/keys",
    });
    expect(found).toEqual([
      expect.stringMatching(/^AUTH_JWKS_URL: must not carry a user name or password/),
      expect.stringMatching(/^WEBHOOK_URLS: URL 2: must not carry a user name or password/),
    ]);
    expect(found.join("\n")).not.toContain("s3cret");
    expect(
      loadConfig({ WEBHOOK_URLS: "https://hooks.example/events?key=abc", WEBHOOK_SECRET: secret })
        .directory.webhooks?.urls,
    ).toEqual(["https://hooks.example/events?key=abc"]);
  });

  it("reads CORS_ORIGINS as bare origins through the one URL parser, https:// only off loopback in production", () => {
    expect(loadConfig({ CORS_ORIGINS: "https://a.example, http://localhost:5173" }).cors).toEqual({
      mode: "list",
      origins: ["https://a.example", "http://localhost:5173"],
    });
    expect(loadConfig({}).cors).toEqual({ mode: "loopback" });
    expect(loadConfig(PRODUCTION_SETTINGS).cors).toEqual({ mode: "none" });
    expect(problems({ CORS_ORIGINS: "https://a.example/" })).toEqual([
      'CORS_ORIGINS: "https://a.example/": not an origin (scheme://host[:port], no path or trailing slash)',
    ]);
    expect(problems({ CORS_ORIGINS: "a.example" })).toEqual([
      'CORS_ORIGINS: "a.example": not a URL',
    ]);
    expect(problems({ CORS_ORIGINS: "https://*.example" })).toEqual([
      "CORS_ORIGINS: no wildcards: list each origin exactly (scheme://host[:port])",
    ]);
    expect(problems({ CORS_ORIGINS: " , " })).toEqual(["CORS_ORIGINS: lists no origin"]);
    expect(problems({ ...PRODUCTION_SETTINGS, CORS_ORIGINS: "http://app.example" })).toEqual([
      'CORS_ORIGINS: "http://app.example": must be https:// (an http:// page off loopback would carry tokens in clear text)',
    ]);
    expect(
      loadConfig({ ...PRODUCTION_SETTINGS, CORS_ORIGINS: "http://127.0.0.1:5173" }).cors,
    ).toEqual({ mode: "list", origins: ["http://127.0.0.1:5173"] });
  });

  it("freezes the whole configuration, its nested parts too", () => {
    const config = loadConfig({
      REDIS_CLUSTER_NODES: "a:7000,b:7001",
      CORS_ORIGINS: "https://app.example.com",
      TOKEN_CACHE_ENCRYPTION_KEY: KEY,
    });
    for (const part of [
      config,
      config.http,
      config.limits,
      config.redis,
      config.redis.mode === "cluster" ? config.redis.nodes : undefined,
      config.redis.mode === "cluster" ? config.redis.nodes[0] : undefined,
      config.cors,
      config.cors.mode === "list" ? config.cors.origins : undefined,
      config.auth,
      config.embeddedEmulator,
    ]) {
      expect(Object.isFrozen(part)).toBe(true);
    }
    expect(Buffer.isBuffer(config.tokenCacheEncryptionKey)).toBe(true);
  });

  it("checks every URL setting with one parser: its schemes, http:// on loopback where allowed, never the value", () => {
    const jwt = { AUTH_MODE: "jwt", AUTH_ISSUER: "i", AUTH_AUDIENCE: "a" };
    expect(problems({ REDIS_URL: "https://secret@cache" })).toEqual([
      "REDIS_URL: must start with redis:// or rediss://",
    ]);
    expect(problems({ DATABASE_URL: "secret" })).toEqual(["DATABASE_URL: not a URL"]);
    expect(problems({ ACS_ENDPOINT: "http://127.0.0.1:10500" })).toEqual([
      "ACS_ENDPOINT: must be https:// (Entra ID tokens are sent only over TLS)",
    ]);
    expect(problems({ ...jwt, AUTH_JWKS_URL: "http://idp.example/keys" })).toEqual([
      "AUTH_JWKS_URL: must be https:// (http:// only on loopback)",
    ]);
    expect(loadConfig({ ...jwt, AUTH_JWKS_URL: "http://127.0.0.1:9/keys" }).auth).toMatchObject({
      jwksUrl: "http://127.0.0.1:9/keys",
    });
    expect(
      problems({ COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=ftp://x/;accesskey=${KEY}` }),
    ).toEqual(["COMMUNICATION_SERVICES_CONNECTION_STRING: its endpoint must be an https:// URL"]);
    // Passed on as given: a client decodes its own URL (a password's escapes included).
    const redisUrl = "rediss://:p%40ss@cache.example:6380/2";
    expect(loadConfig({ REDIS_URL: redisUrl }).redis).toEqual({ mode: "single", url: redisUrl });
  });

  it("checks a mode's settings only in that mode, and what each choice requires", () => {
    // The jwt settings mean nothing with AUTH_MODE=none.
    expect(loadConfig({ AUTH_MODE: "none", AUTH_JWKS_URL: "not a url" }).auth).toEqual({
      mode: "none",
    });
    expect(problems({ AUTH_MODE: "JWT" })).toEqual(["AUTH_MODE: must be none or jwt"]);
    // With Entra ID and Redis there is no access key to derive the cache's key from...
    const entra = { ACS_ENDPOINT: "https://contoso.communication.azure.com/" };
    expect(problems({ ...entra, REDIS_CLUSTER_NODES: "a:7000" })).toEqual([
      expect.stringMatching(/^TOKEN_CACHE_ENCRYPTION_KEY: required with ACS_ENDPOINT and Redis/),
    ]);
    expect(loadConfig(entra).tokenCacheEncryptionKey).toBeUndefined();
    // ...which a connection string has.
    expect(
      loadConfig({ COMMUNICATION_SERVICES_CONNECTION_STRING: ACS, REDIS_URL: "redis://r" })
        .tokenCacheEncryptionKey,
    ).toBeUndefined();
    expect(problems({ REDIS_URL: "redis://a", REDIS_CLUSTER_NODES: "b:1" })).toEqual([
      "REDIS_CLUSTER_NODES: set it (a Redis Cluster) or REDIS_URL (one Redis), not both",
    ]);
  });

  it("checks each rule between settings once the settings it reads parsed, whatever else failed", () => {
    expect(
      problems({
        HTTP_MAX_CONNECTIONS: "0",
        HTTP_HEADERS_TIMEOUT_MS: "20000",
        ACS_ENDPOINT: "https://contoso.communication.azure.com/",
        COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=http://acs.internal/;accesskey=${KEY}`,
      }),
    ).toEqual([
      "ACS_ENDPOINT: set it (Entra ID) or COMMUNICATION_SERVICES_CONNECTION_STRING (access key), not both",
      "COMMUNICATION_SERVICES_CONNECTION_STRING: an http:// endpoint off loopback sends signed requests in clear text; use https:// or set ACS_ALLOW_INSECURE=true",
      "HTTP_MAX_CONNECTIONS: must be from 1 to 1000000",
      "HTTP_HEADERS_TIMEOUT_MS: must not exceed HTTP_REQUEST_TIMEOUT_MS",
    ]);
  });
});
