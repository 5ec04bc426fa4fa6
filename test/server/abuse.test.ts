import { request as httpRequest, type OutgoingHttpHeaders } from "node:http";
import { connect, type Socket } from "node:net";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { createLogger } from "../../src/logger.js";
import { CREATE, ISSUE, ok, run, startGateway } from "../helpers/gateway.js";
import { startTestIssuer, type TestIssuer } from "../helpers/jwks.js";

/**
 * What an attacker can make one request cost, and what a hostile or broken client can hold:
 * document bounds before validation, socket timeouts and a connection cap, production error texts,
 * repeated Authorization headers, and log volume.
 */
let app: App;
let url: string;

beforeAll(async () => {
  app = await startGateway({
    HOST: "127.0.0.1",
    HTTP_REQUEST_TIMEOUT_MS: "600",
    HTTP_HEADERS_TIMEOUT_MS: "400",
    HTTP_MAX_CONNECTIONS: "40",
  });
  url = await app.listen(0);
});
afterAll(() => app.close());

async function post(body: string, target = url) {
  const response = await fetch(target, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  return { status: response.status, body: (await response.json()) as any };
}

describe("hostile documents", () => {
  // The shape that froze the process for seconds: one selection set of the same field, many times.
  const repeated = (count: number) =>
    `{ _entities(representations: []) { ... on CommunicationUser { ${"id ".repeat(count)}} } }`;

  it("refuses a 32 KB document of repeated fields while other clients are served", async () => {
    const comment = `# ${Math.random()}\n`; // defeats any document cache
    const hostile = comment + repeated(Math.floor((32 * 1024 - 200) / 3));
    expect(hostile.length).toBeLessThanOrEqual(32 * 1024);
    const attacks = Array.from({ length: 4 }, () => post(JSON.stringify({ query: hostile })));
    const normal = Array.from({ length: 20 }, () => post(JSON.stringify({ query: CREATE })));
    for (const attack of await Promise.all(attacks)) {
      expect(attack.status).toBe(400);
      expect(attack.body.errors[0].extensions.code).toBe("GRAPHQL_PARSE_FAILED");
      expect(attack.body.errors[0].message).toContain("tokens");
    }
    for (const answer of await Promise.all(normal)) {
      expect(answer.body.errors).toBeUndefined();
      expect(answer.body.data.createUser.id).toMatch(/^8:acs:/);
    }
  });

  it("refuses repeated selections within the token bound before validating them", async () => {
    for (const query of [
      repeated(6),
      `{ _entities(representations: []) { ${"... on CommunicationUser { id } ".repeat(6)}} }`,
      `{ ${Array.from({ length: 40 }, (_, i) => `a${i}: __typename`).join(" ")} ${"me { subject } ".repeat(30)} }`,
    ]) {
      const answer = await post(JSON.stringify({ query }));
      expect(answer.status).toBe(400);
      expect(answer.body.errors[0].extensions.code).toBe("GRAPHQL_VALIDATION_FAILED");
    }
    // The same field a few times, as merged fragments produce, is fine.
    const merged = await post(
      JSON.stringify({ query: "{ me { subject subject } me { subject } __typename }" }),
    );
    expect(merged.body.errors).toBeUndefined();
  });
});

describe("sockets", () => {
  function openSocket(): Promise<Socket> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = connect({ host: hostname, port: Number(port) }, () => resolve(socket));
      socket.once("error", reject);
    });
  }

  /** Resolves with what the server wrote before it closed the connection. */
  function closed(socket: Socket): Promise<string> {
    let received = "";
    socket.on("data", (chunk) => (received += chunk.toString()));
    socket.on("error", () => {});
    return new Promise((resolve) => socket.once("close", () => resolve(received)));
  }

  it("closes a connection that sends part of a body and then nothing, with 408", async () => {
    const socket = await openSocket();
    const ended = closed(socket);
    socket.write(
      `POST /graphql HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"query":`,
    );
    expect(await ended).toMatch(/^HTTP\/1\.1 408/);
  });

  it("closes a connection that never finishes its headers", async () => {
    const socket = await openSocket();
    const ended = closed(socket);
    socket.write("POST /graphql HTTP/1.1\r\nHost: x\r\n");
    expect(await ended).toMatch(/^HTTP\/1\.1 408/);
  });
});

describe("in production", () => {
  let issuer: TestIssuer;
  let production: App;
  let productionUrl: string;
  let token: string;

  beforeAll(async () => {
    issuer = await startTestIssuer();
    production = await startGateway({
      HOST: "127.0.0.1",
      NODE_ENV: "production",
      AUTH_MODE: "jwt",
      AUTH_JWKS_URL: issuer.jwksUrl,
      AUTH_ISSUER: issuer.issuer,
      AUTH_AUDIENCE: issuer.audience,
      COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=${app.acs.endpoint};accesskey=${app.acs.accessKey}`,
    });
    productionUrl = await production.listen(0);
    token = await issuer.sign({ roles: ["acs.admin"] }, { subject: "ops" });
  });
  afterAll(async () => {
    await production.close();
    await issuer.close();
  });

  it("answers variable coercion errors without the schema's suggestions", async () => {
    const response = await fetch(productionUrl, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: ISSUE, variables: { scopes: ["VIOP"] } }),
    });
    const body = (await response.json()) as any;
    expect(body.errors[0].extensions.code).toBe("BAD_USER_INPUT");
    expect(body.errors[0].message).toContain('"VIOP"');
    expect(body.errors[0].message).not.toMatch(/Did you mean|VOIP\b/);
  });

  it("refuses a request with two Authorization headers instead of picking one", async () => {
    const { hostname, port } = new URL(productionUrl);
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = httpRequest(
        {
          host: hostname,
          port,
          path: "/graphql",
          method: "POST",
          // Node sends an array value as repeated header lines.
          headers: {
            "content-type": "application/json",
            authorization: [`Bearer ${token}`, "Bearer someone-else"],
          } as unknown as OutgoingHttpHeaders,
        },
        (response) => {
          let body = "";
          response.on("data", (chunk) => (body += chunk));
          response.on("end", () => resolve({ status: response.statusCode!, body }));
        },
      );
      request.on("error", reject);
      request.end(JSON.stringify({ query: "{ me { subject } }" }));
    });
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body).errors[0].extensions.code).toBe("UNAUTHENTICATED");
  });
});

describe("logs", () => {
  it("logs an unexpected failure repeated on many fields once per request, with a count", async () => {
    let text = "";
    const logger = createLogger(
      { level: "info" },
      new Writable({
        write(chunk, _encoding, done) {
          text += chunk.toString();
          done();
        },
      }),
    );
    const faulty = await startGateway({}, { logger });
    try {
      // A bug below the resolver on every representation (fault injected into the mapping layer).
      faulty.ownership.isKnownDeleted = async () => {
        throw new TypeError("a bug in the cache client");
      };
      const userId = (await ok<{ createUser: { id: string } }>(faulty, CREATE)).createUser.id;
      const representations = Array.from({ length: 50 }, () => ({
        __typename: "CommunicationUser",
        id: userId,
      }));
      const result = await run(
        faulty,
        "query ($r: [_Any!]!) { _entities(representations: $r) { ... on CommunicationUser { id } } }",
        { r: representations },
      );
      expect(result.errors).toHaveLength(50);
      const lines = text
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line))
        .filter((line) => line.msg === "unexpected error while resolving");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ count: 50, err: { name: "TypeError" } });
      // And the healthy path still works on the shared app.
      await ok(app, CREATE);
    } finally {
      await faulty.close();
    }
  });
});
