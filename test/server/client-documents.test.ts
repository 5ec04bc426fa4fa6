import { createHash } from "node:crypto";
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
 * The client package's own documents go through the one GraphQL pipeline, like every other
 * document: the same answers as any text, and the manifest's ids are known without a round trip
 * (src/server/persisted-documents.ts).
 */
const DOCUMENTS = operationsByName();
const ISSUE_TOKEN = DOCUMENTS.get("IssueToken")!;
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
const idOf = (name: string) =>
  TRUSTED_DOCUMENTS_MANIFEST.operations.find((o) => o.name === name)!.id;

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

describe("the client package's documents", () => {
  let userId: string;

  it("answer a cache hit as the same operation in any other text does", async () => {
    const created = await send(
      { query: "mutation { createUser { id } }" },
      { authorization: admin },
    );
    userId = created.body.data.createUser.id;
    const variables = { userId, scopes: ["CHAT", "VOIP"], expiresInMinutes: 60 };
    const first = await send({ query: ISSUE_TOKEN, variables }, { authorization: admin });
    expect(first.access).toMatchObject({ cache: { hits: 0, misses: 1 }, upstreamCalls: 1 });
    const client = await send({ query: ISSUE_TOKEN, variables }, { authorization: admin });
    const other = await send({ query: `${ISSUE_TOKEN} `, variables }, { authorization: admin });
    expect({ ...client, requestId: undefined }).toEqual({ ...other, requestId: undefined });
    expect(client.status).toBe(200);
    expect(client.contentType).toBe("application/json; charset=utf-8");
    expect(client.body.data.issueToken).toMatchObject({
      token: first.body.data.issueToken.token,
      scopes: ["CHAT", "VOIP"],
      user: { id: userId },
    });
    expect(client.access).toMatchObject({
      fields: ["issueToken"],
      outcome: "ok",
      operation: "IssueToken",
      cache: { hits: 1, misses: 0 },
    });
  });

  it("are answered by their id alone before any text was sent, and a wrong text for an id is refused", async () => {
    const variables = { userId, scopes: ["CHAT", "VOIP"], expiresInMinutes: 60 };
    const persisted = { persistedQuery: { version: 1, sha256Hash: idOf("IssueToken") } };
    const idAlone = await send(
      { operationName: "IssueToken", variables, extensions: persisted },
      { authorization: admin },
    );
    expect(idAlone.status).toBe(200);
    expect(idAlone.body.data.issueToken.user.id).toBe(userId);
    const withText = await send(
      { query: ISSUE_TOKEN, operationName: "IssueToken", variables, extensions: persisted },
      { authorization: admin },
    );
    expect(withText.body.data.issueToken.token).toBe(idAlone.body.data.issueToken.token);
    // An ad-hoc document's hash alone is not known until its text was sent once.
    const adHoc = "query { __typename }";
    const unknown = await send(
      { extensions: { persistedQuery: { version: 1, sha256Hash: sha256(adHoc) } } },
      { authorization: admin },
    );
    expect(unknown.body.errors[0].extensions.code).toBe("PERSISTED_QUERY_NOT_FOUND");
    const mismatch = await send(
      { query: DOCUMENTS.get("IssueMyToken")!, variables, extensions: persisted },
      { authorization: admin },
    );
    expect(mismatch.status).toBe(400);
    expect(mismatch.body.errors[0].extensions.code).toBe("PERSISTED_QUERY_HASH_MISMATCH");
  });

  it("serves createGatewayClient's requests, in both of its send modes, the id alone even before any text was sent", async () => {
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
      const data = await client.request("IssueMyToken", { scopes: ["CHAT"] });
      expect(data.issueMyToken.token).toMatch(/\./);
    }
  });
});
