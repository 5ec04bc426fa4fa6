import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { startTestEmulator } from "../helpers/emulator.js";
import { surfaceProbes } from "./loose-probes.js";
import { EMPTY_BODY_HASH, rawRequest, signedHeaders, type RawRequest } from "./signing.js";
import { assertErrorShape, assertMatchesSpec, specExample } from "./spec.js";

/** What the SDK cannot send: broken signatures, odd bodies, unknown paths. Raw signed HTTP only. */

const API = "api-version=2023-10-01";
let emulator: Emulator;

const send = (req: RawRequest) => rawRequest(emulator.endpoint, emulator.accessKey, req);

async function expectError(req: RawRequest, status: number, code: string, target?: string) {
  const res = await send(req);
  expect(res.status, res.text).toBe(status);
  expect(res.headers["content-type"]).toBe("application/json");
  assertErrorShape(res.json);
  const error = (res.json as { error: { code: string; target?: string } }).error;
  expect(error.code).toBe(code);
  if (target !== undefined) {
    expect(error.target).toBe(target);
  }
  return res;
}

async function newIdentity(): Promise<string> {
  const res = await send({ method: "POST", path: `/identities?${API}` });
  return (res.json as { identity: { id: string } }).identity.id;
}

beforeAll(async () => {
  emulator = await startTestEmulator();
});

afterAll(async () => {
  await emulator.close();
});

describe("request signing", () => {
  it("accepts a request signed exactly as the wire facts describe, with an empty body", async () => {
    const res = await send({ method: "POST", path: `/identities?${API}` });
    expect(res.status).toBe(201);
    assertMatchesSpec("CommunicationIdentityAccessTokenResult", res.json);
  });

  it("refuses a request without an Authorization header with 401 Denied", async () => {
    const res = await expectError(
      { method: "POST", path: `/identities?${API}`, sign: { authorization: null } },
      401,
      "Denied",
    );
    expect(res.json).toEqual({
      error: { code: "Denied", message: "Denied by the resource provider." },
    });
  });

  it("refuses malformed, forged and wrong-key signatures with 401 Denied", async () => {
    const path = `/identities?${API}`;
    for (const sign of [
      { authorization: "Bearer abc" },
      { authorization: "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=" },
      { authorization: "HMAC-SHA256 SignedHeaders=x-ms-date;host&Signature=AAAA" },
      {
        authorization: `HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=${Buffer.alloc(32).toString("base64")}`,
      },
      { accessKey: Buffer.alloc(64, 1).toString("base64") },
      { path: `/identities?api-version=2022-06-01` },
    ]) {
      await expectError({ method: "POST", path, sign }, 401, "Denied");
    }
  });

  it("refuses a signature or content hash that is base64 only once the junk in it is skipped", async () => {
    const path = `/identities?${API}`;
    const date = new Date().toUTCString();
    const valid = signedHeaders(emulator.endpoint, emulator.accessKey, {
      method: "POST",
      path,
      sign: { date },
    }).authorization!;
    const [prefix, signature] = valid.split("Signature=") as [string, string];
    // Node's base64 decoder skips characters outside the alphabet: each of these decodes to the
    // valid signature's bytes.
    for (const mangled of [`${signature}!!`, `${signature.slice(0, 8)}*${signature.slice(8)}`]) {
      await expectError(
        { method: "POST", path, sign: { date, authorization: `${prefix}Signature=${mangled}` } },
        401,
        "Denied",
      );
    }
    // A content hash with junk, signed as sent: the signature is right, the hash is not base64.
    await expectError(
      { method: "POST", path, sign: { contentHash: `${EMPTY_BODY_HASH}!!` } },
      401,
      "Denied",
    );
    expect((await send({ method: "POST", path, sign: { date } })).status).toBe(201);
  });

  it("refuses a content hash that does not match the body that arrived", async () => {
    const body = JSON.stringify({ createTokenWithScopes: ["chat"] });
    await expectError(
      { method: "POST", path: `/identities?${API}`, body, sign: { contentHash: EMPTY_BODY_HASH } },
      401,
      "Denied",
    );
  });

  it("refuses an x-ms-date more than 15 minutes off and accepts one 14 minutes off", async () => {
    const path = `/identities?${API}`;
    for (const offsetMinutes of [16, -16]) {
      const date = new Date(Date.now() + offsetMinutes * 60_000).toUTCString();
      await expectError({ method: "POST", path, sign: { date } }, 401, "Denied");
    }
    await expectError({ method: "POST", path, sign: { date: "yesterday" } }, 401, "Denied");
    const res = await send({
      method: "POST",
      path,
      sign: { date: new Date(Date.now() - 14 * 60_000).toUTCString() },
    });
    expect(res.status).toBe(201);
  });

  it("accepts a request signed over `date` with a Date header, as the 1.0.0-beta SDKs sign", async () => {
    const path = `/identities?${API}`;
    const res = await send({ method: "POST", path, sign: { dateHeader: "date" } });
    expect(res.status, res.text).toBe(201);
    // The same rules as over x-ms-date: a wrong key, a date 16 minutes off, or a Date header not
    // sent at all are refused.
    await expectError(
      {
        method: "POST",
        path,
        sign: { dateHeader: "date", accessKey: Buffer.alloc(64, 1).toString("base64") },
      },
      401,
      "Denied",
    );
    const late = new Date(Date.now() - 16 * 60_000).toUTCString();
    await expectError(
      { method: "POST", path, sign: { dateHeader: "date", date: late } },
      401,
      "Denied",
    );
    const headers = signedHeaders(emulator.endpoint, emulator.accessKey, {
      method: "POST",
      path,
      sign: { dateHeader: "date" },
    });
    // Signed over `date`, sent with x-ms-date only.
    await expectError(
      { method: "POST", path, sign: { authorization: headers.authorization! } },
      401,
      "Denied",
    );
  });

  it("signs the host with its port: a signature for another port is refused", async () => {
    const res = await send({
      method: "POST",
      path: `/identities?${API}`,
      headers: { host: `127.0.0.1:${Number(new URL(emulator.endpoint).port) + 1}` },
    });
    expect(res.status).toBe(401);
  });
});

describe("api-version", () => {
  it("answers 400 with a clear message when the api-version is missing", async () => {
    const res = await expectError(
      { method: "POST", path: "/identities" },
      400,
      "MissingApiVersionParameter",
      "api-version",
    );
    expect((res.json as { error: { message: string } }).error.message).toContain("2023-10-01");
  });

  it("answers 400 for an api-version it does not speak", async () => {
    const res = await expectError(
      { method: "POST", path: "/identities?api-version=2020-01-01" },
      400,
      "UnsupportedApiVersion",
      "api-version",
    );
    expect((res.json as { error: { message: string } }).error.message).toContain("2021-03-07");
  });

  it("with loose, answers an unknown api-version as its newest one, and still needs one", async () => {
    const loose = await startTestEmulator({ loose: true });
    try {
      const call = (req: RawRequest) => rawRequest(loose.endpoint, loose.accessKey, req);
      const newest = String(
        (await call({ method: "POST", path: `/identities?${API}` })).headers[
          "api-supported-versions"
        ],
      )
        .split(", ")
        .at(-1)!;
      const asNewest = await surfaceProbes(call, newest);
      expect(asNewest.createWithToken).toBe("201");
      for (const unknown of ["2099-01-01", "not-a-version"]) {
        expect(await surfaceProbes(call, unknown), unknown).toEqual(asNewest);
      }
      // A known version keeps its own surface, and a missing one is still refused.
      expect(await surfaceProbes(call, "2021-03-07")).not.toEqual(asNewest);
      const missing = await call({ method: "POST", path: "/identities" });
      expect((missing.json as { error: { code: string } }).error.code).toBe(
        "MissingApiVersionParameter",
      );
    } finally {
      await loose.close();
    }
  });
});

describe("the emulator's own routes", () => {
  it("answers GET /emulator/health without a signature", async () => {
    const res = await fetch(new URL("emulator/health", emulator.endpoint));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      status: "ok",
      version: expect.stringMatching(/^\d+\.\d+\.\d+/),
      apiVersions: expect.arrayContaining(["2023-10-01"]),
    });
    expect(
      (await fetch(new URL("emulator/health", emulator.endpoint), { method: "POST" })).status,
    ).toBe(405);
  });

  it("lists identities, signed, paged in creation order, with deletions and revocations", async () => {
    const fresh = await startTestEmulator();
    try {
      const call = (req: RawRequest) => rawRequest(fresh.endpoint, fresh.accessKey, req);
      const ids: string[] = [];
      for (const body of [
        JSON.stringify({ createTokenWithScopes: ["chat"] }),
        undefined,
        undefined,
      ]) {
        const created = await call({ method: "POST", path: `/identities?${API}`, body });
        ids.push((created.json as { identity: { id: string } }).identity.id);
      }
      const [first, revoked, deleted] = ids.map(encodeURIComponent);
      expect(first).toBeDefined();
      await call({ method: "POST", path: `/identities/${revoked}/:revokeAccessTokens?${API}` });
      await call({ method: "DELETE", path: `/identities/${deleted}?${API}` });

      const unsigned = await call({
        method: "GET",
        path: "/emulator/identities",
        sign: { authorization: null },
      });
      expect(unsigned.status).toBe(401);

      const page = await call({ method: "GET", path: "/emulator/identities?top=2" });
      expect(page.status, page.text).toBe(200);
      const iso = expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(page.json).toEqual({
        value: [
          { id: ids[0], createdAt: iso, deleted: false, lastTokenIssuedAt: iso },
          { id: ids[1], createdAt: iso, deleted: false, revokedAt: iso },
        ],
        count: 3,
        nextLink: "/emulator/identities?skip=2&top=2",
      });
      const next = await call({
        method: "GET",
        path: (page.json as { nextLink: string }).nextLink,
      });
      expect(next.json).toEqual({
        value: [{ id: ids[2], createdAt: iso, deleted: true, deletedAt: iso }],
        count: 3,
      });
      // 100 a page unless asked, at most 1000.
      expect((await call({ method: "GET", path: "/emulator/identities" })).json).toMatchObject({
        count: 3,
      });
      for (const query of ["top=0", "top=1001", "top=x", "skip=-1"]) {
        const refused = await call({ method: "GET", path: `/emulator/identities?${query}` });
        expect(refused.status, query).toBe(400);
        expect((refused.json as { error: { target: string } }).error.target).toBe(
          query.slice(0, query.indexOf("=")),
        );
      }
    } finally {
      await fresh.close();
    }
  });

  it("resets identities, revocations and counters on a signed POST /emulator/reset", async () => {
    const fresh = await startTestEmulator();
    try {
      const call = (req: RawRequest) => rawRequest(fresh.endpoint, fresh.accessKey, req);
      const created = await call({
        method: "POST",
        path: `/identities?${API}`,
        body: JSON.stringify({ createTokenWithScopes: ["chat"] }),
      });
      const { identity, accessToken } = created.json as {
        identity: { id: string };
        accessToken: { token: string };
      };
      const id = encodeURIComponent(identity.id);
      await call({ method: "POST", path: `/identities/${id}/:revokeAccessTokens?${API}` });
      expect(fresh.counters.createIdentity).toBe(1);

      const unsigned = await call({
        method: "POST",
        path: "/emulator/reset",
        sign: { authorization: null },
      });
      expect(unsigned.status).toBe(401);
      expect(fresh.counters.createIdentity).toBe(1);

      const reset = await call({ method: "POST", path: "/emulator/reset" });
      expect(reset.status, reset.text).toBe(204);
      expect(fresh.counters.createIdentity).toBe(0);
      expect(fresh.counters.revokeAccessTokens).toBe(0);
      expect((await call({ method: "GET", path: "/emulator/identities" })).json).toEqual({
        value: [],
        count: 0,
      });
      const issue = await call({
        method: "POST",
        path: `/identities/${id}/:issueAccessToken?${API}`,
        body: JSON.stringify({ scopes: ["chat"] }),
      });
      expect(issue.status).toBe(404);
      const introspected = await call({
        method: "POST",
        path: "/emulator/introspect",
        body: JSON.stringify({ token: accessToken.token }),
      });
      expect(introspected.json).toMatchObject({ active: false, reason: "invalid" });
      expect((await call({ method: "POST", path: `/identities?${API}` })).status).toBe(201);
    } finally {
      await fresh.close();
    }
  });
});

describe("response context", () => {
  it("carries the real service's headers and echoes x-ms-client-request-id", async () => {
    const res = await send({
      method: "POST",
      path: `/identities?${API}`,
      headers: { "x-ms-client-request-id": "my-correlation-id" },
    });
    expect(res.headers["x-ms-client-request-id"]).toBe("my-correlation-id");
    expect(res.headers["api-supported-versions"]).toBe(
      "2020-07-20-preview2, 2021-03-07, 2021-10-31-preview, 2021-11-01, 2022-06-01, 2022-10-01, 2023-10-01, 2025-03-02-preview, 2025-04-01-preview, 2025-06-30",
    );
    expect(res.headers["ms-cv"]).toMatch(/^[A-Za-z0-9+/]+\.0$/);
    expect(res.headers["x-processing-time"]).toMatch(/^\d+ms$/);
    expect(Number.isNaN(Date.parse(String(res.headers.date)))).toBe(false);
    expect(res.headers["content-type"]).toBe("application/json; charset=utf-8");
  });
});

describe("bodies and paths", () => {
  it("accepts the spec's own example requests for create and issue", async () => {
    const create = specExample("CreateIdentity").parameters.body;
    const created = await send({
      method: "POST",
      path: `/identities?${API}`,
      body: JSON.stringify(create),
    });
    expect(created.status).toBe(201);
    assertMatchesSpec("CommunicationIdentityAccessTokenResult", created.json);
    const id = (created.json as { identity: { id: string } }).identity.id;
    const issue = specExample("IssueAccessToken").parameters.body;
    const issued = await send({
      method: "POST",
      path: `/identities/${encodeURIComponent(id)}/:issueAccessToken?${API}`,
      body: JSON.stringify(issue),
    });
    expect(issued.status).toBe(200);
    assertMatchesSpec("CommunicationIdentityAccessToken", issued.json);
  });

  it("answers malformed JSON and wrongly typed fields with 400 ValidationError", async () => {
    const id = encodeURIComponent(await newIdentity());
    const issuePath = `/identities/${id}/:issueAccessToken?${API}`;
    await expectError(
      { method: "POST", path: `/identities?${API}`, body: "{not json" },
      400,
      "ValidationError",
      "body",
    );
    await expectError(
      { method: "POST", path: issuePath, body: "[1,2]" },
      400,
      "ValidationError",
      "body",
    );
    await expectError(
      { method: "POST", path: issuePath, body: "" },
      400,
      "ValidationError",
      "body",
    );
    await expectError(
      { method: "POST", path: issuePath, body: '{"scopes":"chat"}' },
      400,
      "ValidationError",
      "scopes",
    );
    await expectError(
      { method: "POST", path: issuePath, body: '{"scopes":["chat",7]}' },
      400,
      "ValidationError",
      "scopes",
    );
    await expectError(
      { method: "POST", path: issuePath, body: '{"scopes":["teams"]}' },
      400,
      "ValidationError",
      "scopes",
    );
    await expectError(
      { method: "POST", path: issuePath, body: '{"scopes":["chat"],"expiresInMinutes":"60"}' },
      400,
      "ValidationError",
      "ExpiresInMinutes",
    );
    await expectError(
      { method: "POST", path: issuePath, body: '{"scopes":["chat"],"expiresInMinutes":60.5}' },
      400,
      "ValidationError",
      "ExpiresInMinutes",
    );
    await expectError(
      { method: "POST", path: `/identities?${API}`, body: '{"createTokenWithScopes":[]}' },
      400,
      "ValidationError",
      "createTokenWithScopes",
    );
  });

  it("refuses a body above 64 KiB with 413 and keeps serving", async () => {
    await expectError(
      {
        method: "POST",
        path: `/identities?${API}`,
        body: JSON.stringify({ pad: "x".repeat(100_000) }),
      },
      413,
      "RequestEntityTooLarge",
    );
    expect((await send({ method: "POST", path: `/identities?${API}` })).status).toBe(201);
  });

  it("answers unknown paths with 404 and wrong methods with 405, in the ACS error shape", async () => {
    await expectError({ method: "GET", path: `/nothing/here?${API}` }, 404, "NotFound");
    await expectError(
      { method: "POST", path: `/identities/x/:unknownAction?${API}` },
      404,
      "NotFound",
    );
    const res = await expectError(
      { method: "GET", path: `/identities?${API}` },
      405,
      "MethodNotAllowed",
    );
    expect(res.headers.allow).toBe("POST");
  });

  it("treats an id that is not this resource's, or not even decodable, as not owned", async () => {
    for (const id of [
      "%E0%A4%A",
      "garbage",
      encodeURIComponent("8:orgid:32c0a5db-05ec-78ea-51ab-3f06b329397e"),
    ]) {
      await expectError(
        { method: "POST", path: `/identities/${id}/:revokeAccessTokens?${API}` },
        401,
        "IdentityNotOwned",
      );
    }
  });

  it("revokes and deletes through percent-encoded ids with 204 and no body", async () => {
    const id = encodeURIComponent(await newIdentity());
    const revoked = await send({
      method: "POST",
      path: `/identities/${id}/:revokeAccessTokens?${API}`,
    });
    expect(revoked.status).toBe(204);
    expect(revoked.text).toBe("");
    const deleted = await send({ method: "DELETE", path: `/identities/${id}?${API}` });
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe("");
  });
});

describe("settings", () => {
  it("adds the configured latency before every answer, errors included", async () => {
    const slow = await startTestEmulator({ latencyMs: 150 });
    try {
      for (const path of [`/identities?${API}`, "/nope"]) {
        const started = performance.now();
        await rawRequest(slow.endpoint, slow.accessKey, { method: "POST", path });
        expect(performance.now() - started).toBeGreaterThanOrEqual(140);
      }
    } finally {
      await slow.close();
    }
  });

  it("mints ids with a configured resource id and refuses ids of the default one as not owned", async () => {
    const resourceId = "11111111-2222-4333-8444-555555555555";
    const other = await startTestEmulator({ resourceId });
    try {
      const res = await rawRequest(other.endpoint, other.accessKey, {
        method: "POST",
        path: `/identities?${API}`,
      });
      expect(
        (res.json as { identity: { id: string } }).identity.id.startsWith(`8:acs:${resourceId}_`),
      ).toBe(true);
      const foreign = encodeURIComponent(await newIdentity());
      const refused = await rawRequest(other.endpoint, other.accessKey, {
        method: "DELETE",
        path: `/identities/${foreign}?${API}`,
      });
      expect(refused.status).toBe(401);
    } finally {
      await other.close();
    }
  });

  it("refuses bad options at start with every problem listed", async () => {
    await expect(
      startTestEmulator({ accessKey: "not base64!", resourceId: "nope", latencyMs: -1 }),
    ).rejects.toThrow(/accessKey[\s\S]*resourceId[\s\S]*latencyMs/);
  });
});
