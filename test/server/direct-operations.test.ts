import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { createLogger } from "../../src/logger.js";
import { createGatewayClient } from "@acs-identity-gateway/client";
import {
  operationsByName,
  TRUSTED_DOCUMENTS_MANIFEST,
} from "../../src/server/persisted-documents.js";
import { startTestEmulator } from "../helpers/emulator.js";
import { startGateway } from "../helpers/gateway.js";
import { startTestIssuer, type TestIssuer } from "../helpers/jwks.js";

/**
 * The direct path (src/server/direct-operations.ts) answers the client package's IssueToken and
 * IssueMyToken texts without Apollo's pipeline. Its promise is that nobody can tell: every case
 * below is sent twice, as the manifest's text (direct) and as the same text with one more space
 * (a document the direct path does not know, so Apollo answers), and the two answers must match:
 * status, content type, body, and the access line.
 */
const DOCUMENTS = operationsByName();
const ISSUE_TOKEN = DOCUMENTS.get("IssueToken")!;
const ISSUE_MY_TOKEN = DOCUMENTS.get("IssueMyToken")!;
const idOf = (name: string) =>
  TRUSTED_DOCUMENTS_MANIFEST.operations.find((o) => o.name === name)!.id;
/** An accept header the direct path leaves to Apollo, whose negotiation still picks JSON. */
const APOLLO_ACCEPT = "application/json, text/plain";

let emulator: Emulator;
let issuer: TestIssuer;
let app: App;
let admin: string;
let endUser: string;
let lines: Record<string, any>[] = [];

beforeAll(async () => {
  [emulator, issuer] = await Promise.all([startTestEmulator(), startTestIssuer()]);
  const logger = createLogger(
    { level: "info" },
    new Writable({
      write(chunk, _encoding, done) {
        for (const line of chunk.toString().trim().split("\n")) {
          lines.push(JSON.parse(line));
        }
        done();
      },
    }),
  );
  app = await startGateway(
    {
      NODE_ENV: "production",
      AUTH_MODE: "jwt",
      AUTH_JWKS_URL: issuer.jwksUrl,
      AUTH_ISSUER: issuer.issuer,
      AUTH_AUDIENCE: issuer.audience,
      COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
      // An end user's first token costs two ACS calls (identity, token): the third is refused.
      RATE_LIMIT_ACS_CALLS_PER_MINUTE: "2",
    },
    { logger },
  );
  admin = `Bearer ${await issuer.sign({ roles: ["acs.admin"] }, { subject: "ops" })}`;
  endUser = `Bearer ${await issuer.sign({}, { subject: "alice" })}`;
});

afterAll(async () => {
  await app?.close();
  await Promise.all([emulator?.close(), issuer?.close()]);
});

async function directCount(): Promise<number> {
  return (await app.metrics.graphqlDirect.get()).values[0]?.value ?? 0;
}

interface Answer {
  status: number;
  contentType: string | undefined;
  requestId: string | undefined;
  body: any;
  /** The bytes, compared too: key order and Apollo's trailing newline. */
  raw: string;
  access: Record<string, any> | undefined;
}

async function send(
  body: Record<string, unknown>,
  headers: Record<string, string>,
): Promise<Answer> {
  lines = [];
  const response = await app.server.fastify.inject({
    method: "POST",
    url: "/graphql",
    headers: { "content-type": "application/json", ...headers },
    payload: JSON.stringify(body),
  });
  const access = lines.find((line) => line.msg === "graphql request");
  return {
    status: response.statusCode,
    contentType: response.headers["content-type"] as string | undefined,
    requestId: response.headers["x-request-id"] as string | undefined,
    body: JSON.parse(response.body),
    raw: response.body,
    // What differs by nature: the request id and the time taken.
    access: access && { ...access, time: undefined, reqId: undefined, ms: undefined },
  };
}

/**
 * The case through both paths. `expectDirect`: whether the manifest's text is answered directly
 * (false: it is handed to Apollo, as refused credentials and bad variables are).
 */
async function both(
  query: string,
  rest: Record<string, unknown>,
  headers: Record<string, string>,
  expectDirect: boolean,
): Promise<Answer> {
  const before = await directCount();
  const direct = await send({ query, ...rest }, headers);
  expect(await directCount()).toBe(before + (expectDirect ? 1 : 0));
  const viaApollo = await send({ query: `${query} `, ...rest }, headers);
  expect(await directCount()).toBe(before + (expectDirect ? 1 : 0));
  expect(direct.requestId).toMatch(/./);
  expect({ ...direct, requestId: undefined }).toEqual({ ...viaApollo, requestId: undefined });
  return direct;
}

describe("the direct path for the client's token operations", () => {
  let userId: string;

  it("answers a cache-hit IssueToken as Apollo does, and counts it", async () => {
    const created = await send(
      { query: "mutation { createUser { id } }" },
      { authorization: admin },
    );
    userId = created.body.data.createUser.id;
    const variables = { userId, scopes: ["CHAT", "VOIP"], expiresInMinutes: 60 };
    // The first request mints (a miss); the comparison is of cache hits, as both paths then are.
    const first = await send({ query: ISSUE_TOKEN, variables }, { authorization: admin });
    expect(first.access).toMatchObject({ cache: { hits: 0, misses: 1 }, upstreamCalls: 1 });
    const answer = await both(ISSUE_TOKEN, { variables }, { authorization: admin }, true);
    expect(answer.status).toBe(200);
    expect(answer.contentType).toBe("application/json; charset=utf-8");
    expect(answer.body.data.issueToken).toMatchObject({
      token: first.body.data.issueToken.token,
      scopes: ["CHAT", "VOIP"],
      user: { id: userId },
    });
    expect(answer.access).toMatchObject({
      fields: ["issueToken"],
      outcome: "ok",
      operation: "IssueToken",
      cache: { hits: 1, misses: 0 },
    });
  });

  it("answers IssueMyToken for an end user (identity created on first use) as Apollo does", async () => {
    const variables = { scopes: ["CHAT"] };
    const first = await send({ query: ISSUE_MY_TOKEN, variables }, { authorization: endUser });
    expect(first.access).toMatchObject({ cache: { hits: 0, misses: 1 }, upstreamCalls: 2 });
    const answer = await both(ISSUE_MY_TOKEN, { variables }, { authorization: endUser }, true);
    expect(answer.body.data.issueMyToken.token).toBe(first.body.data.issueMyToken.token);
  });

  it("negotiates the content type like Apollo for the accept headers it knows, and leaves the rest to Apollo", async () => {
    const variables = { userId, scopes: ["CHAT", "VOIP"], expiresInMinutes: 60 };
    for (const accept of [
      "application/graphql-response+json, application/json",
      "application/graphql-response+json,application/json;q=0.9",
      "*/*",
      "application/json",
    ]) {
      const answer = await both(ISSUE_TOKEN, { variables }, { authorization: admin, accept }, true);
      expect(answer.contentType).toBe(
        accept.startsWith("application/graphql-response+json")
          ? "application/graphql-response+json; charset=utf-8"
          : "application/json; charset=utf-8",
      );
    }
    const other = await both(
      ISSUE_TOKEN,
      { variables },
      { authorization: admin, accept: "application/graphql-response+json" },
      false,
    );
    expect(other.contentType).toBe("application/graphql-response+json; charset=utf-8");
  });

  it("formats resolver errors as Apollo does: rights, bad input, an unknown user, the rate limit", async () => {
    const forbidden = await both(
      ISSUE_TOKEN,
      { variables: { userId, scopes: ["CHAT"] } },
      { authorization: endUser },
      true,
    );
    expect(forbidden.body.errors[0].extensions.code).toBe("FORBIDDEN");
    expect(forbidden.access).toMatchObject({ outcome: "FORBIDDEN" });

    const tooShort = await both(
      ISSUE_TOKEN,
      { variables: { userId, scopes: ["CHAT"], expiresInMinutes: 5 } },
      { authorization: admin },
      true,
    );
    expect(tooShort.body.errors[0].extensions.code).toBe("BAD_USER_INPUT");

    const unknown = await both(
      ISSUE_TOKEN,
      { variables: { userId: `${userId.slice(0, -4)}ffff`, scopes: ["CHAT"] } },
      { authorization: admin },
      true,
    );
    expect(unknown.body.errors[0].extensions.code).toBe("NOT_FOUND");

    // alice spent her 2 ACS calls on her first token; another entry needs a third.
    const limited = await both(
      ISSUE_MY_TOKEN,
      { variables: { scopes: ["VOIP"] } },
      { authorization: endUser },
      true,
    );
    expect(limited.body.errors[0].extensions).toMatchObject({ code: "RATE_LIMITED" });
    expect(limited.body.data).toBeNull();
  });

  it("hands refused credentials and uncoercible variables to Apollo, checking the credential once", async () => {
    const refusals = async () =>
      ((await app.metrics.authRefusals.get()).values as { value: number }[]).reduce(
        (sum, v) => sum + v.value,
        0,
      );
    const before = await refusals();
    const unauthenticated = await both(
      ISSUE_MY_TOKEN,
      { variables: { scopes: ["CHAT"] } },
      { authorization: "Bearer not-a-token" },
      false,
    );
    expect(unauthenticated.status).toBe(401);
    // One refusal per request, not two: the direct path's verdict is handed to Apollo.
    expect(await refusals()).toBe(before + 2);

    const badVariables = await both(
      ISSUE_TOKEN,
      { variables: { userId, scopes: ["NOPE"] } },
      { authorization: admin },
      false,
    );
    expect(badVariables.status).toBe(400);
    expect(badVariables.body.errors[0].extensions.code).toBe("BAD_USER_INPUT");
  });

  it("answers the client package's own request shapes: the text with its hash, and the id alone", async () => {
    const variables = { userId, scopes: ["CHAT", "VOIP"], expiresInMinutes: 60 };
    const persisted = { persistedQuery: { version: 1, sha256Hash: idOf("IssueToken") } };
    const withText = {
      query: ISSUE_TOKEN,
      operationName: "IssueToken",
      variables,
      extensions: persisted,
    };
    const before = await directCount();
    const direct = await send(withText, { authorization: admin });
    expect(await directCount()).toBe(before + 1);
    // Apollo's answer to the same body (it also registers the text for the id alone).
    const viaApollo = await send(withText, { authorization: admin, accept: APOLLO_ACCEPT });
    expect(await directCount()).toBe(before + 1);
    expect({ ...direct, requestId: undefined }).toEqual({ ...viaApollo, requestId: undefined });

    const idAlone = { operationName: "IssueToken", variables, extensions: persisted };
    const directId = await send(idAlone, { authorization: admin });
    const apolloId = await send(idAlone, { authorization: admin, accept: APOLLO_ACCEPT });
    expect(await directCount()).toBe(before + 2);
    expect({ ...directId, requestId: undefined }).toEqual({ ...apolloId, requestId: undefined });
    expect(directId.body.data.issueToken.token).toBe(direct.body.data.issueToken.token);

    // A text that is not the one the id names, or another extension: Apollo's to judge.
    for (const body of [
      { ...withText, query: ISSUE_MY_TOKEN },
      { ...withText, extensions: { ...persisted, other: true } },
    ]) {
      await send(body, { authorization: admin });
      expect(await directCount()).toBe(before + 2);
    }
  });

  it("serves createGatewayClient's requests, in both of its send modes, on the direct path", async () => {
    const injected: typeof fetch = async (input, init) => {
      const response = await app.server.fastify.inject({
        method: "POST",
        url: "/graphql",
        headers: Object.fromEntries(new Headers(init?.headers).entries()),
        payload: String(init?.body),
      });
      return new Response(response.body, {
        status: response.statusCode,
        headers: response.headers as Record<string, string>,
      });
    };
    for (const mode of ["text", "id"] as const) {
      const client = createGatewayClient({
        url: "http://gateway.test/graphql",
        fetch: injected,
        send: mode,
        getHeaders: () => ({ authorization: endUser }),
      });
      const before = await directCount();
      const data = await client.request("IssueMyToken", { scopes: ["CHAT"] });
      expect(data.issueMyToken.token).toMatch(/\./);
      expect(await directCount()).toBe(before + 1);
    }
  });

  it("leaves to Apollo what it does not take: extensions, another operation name, variables that are not an object", async () => {
    const variables = { userId, scopes: ["CHAT"] };
    const statuses: number[] = [];
    for (const rest of [
      { variables, extensions: {} },
      { variables, operationName: "Other" },
      { variables: [1] },
    ]) {
      const before = await directCount();
      statuses.push((await send({ query: ISSUE_TOKEN, ...rest }, { authorization: admin })).status);
      expect(await directCount()).toBe(before);
    }
    // Apollo's answers: served, unknown operation name, variables not an object.
    expect(statuses).toEqual([200, 400, 400]);
  });
});
