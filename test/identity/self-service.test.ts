import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { startGateway } from "../helpers/gateway.js";
import { introspect } from "../helpers/introspect.js";
import { startTestIssuer, type TestIssuer } from "../helpers/jwks.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";
import { startPostgres, type PostgresServer } from "../helpers/postgres.js";

/**
 * What ACS apps need beyond the quickstart (issue 13), through GraphQL over HTTP with JWT callers:
 * a signed-in user's own lifecycle on two instances sharing one Redis and one PostgreSQL, the ACS
 * endpoint for chat,
 * and Teams users' token exchange against the emulator.
 */
let issuer: TestIssuer;
let redis: RedisProcess;
let postgres: PostgresServer;
let a: App;
let b: App;
let urlA: string;
let urlB: string;

beforeAll(async () => {
  [issuer, redis, postgres] = await Promise.all([startTestIssuer(), startRedis(), startPostgres()]);
  const env = {
    HOST: "127.0.0.1",
    AUTH_MODE: "jwt",
    AUTH_JWKS_URL: issuer.jwksUrl,
    AUTH_ISSUER: issuer.issuer,
    AUTH_AUDIENCE: issuer.audience,
    REDIS_URL: redis.url,
    DATABASE_URL: await postgres.newDatabase(),
  };
  a = await startGateway(env);
  b = await startGateway({
    ...env,
    COMMUNICATION_SERVICES_CONNECTION_STRING: a.emulator!.connectionString,
  });
  urlA = await a.listen(0);
  urlB = await b.listen(0);
});

afterAll(async () => {
  await b?.close();
  await a?.close();
  await redis?.stop();
  await postgres?.stop();
  await issuer?.close();
});

const counters = () => a.emulator!.counters;

async function gql(url: string, query: string, token: string, variables = {}) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as {
    data?: any;
    errors?: { message: string; extensions?: Record<string, any> }[];
  };
}

async function data(url: string, query: string, token: string, variables = {}) {
  const result = await gql(url, query, token, variables);
  expect(result.errors).toBeUndefined();
  return result.data;
}

const MY_TOKEN = "mutation { issueMyToken(scopes: [VOIP]) { token user { id } } }";
const ME = "{ me { subject communicationUser { id } } }";

describe("a signed-in user's own identity", () => {
  it("revokeMyTokens signs them out everywhere; the next issueMyToken, on either instance, is a new active token", async () => {
    const ann = await issuer.sign({}, { subject: "ann" });
    const first = (await data(urlA, MY_TOKEN, ann)).issueMyToken;
    expect((await data(urlB, MY_TOKEN, ann)).issueMyToken.token).toBe(first.token);

    const revoked = (await data(urlB, "mutation { revokeMyTokens { user { id } revokedAt } }", ann))
      .revokeMyTokens;
    expect(revoked.user.id).toBe(first.user.id);
    expect(await introspect(a.acs, first.token)).toMatchObject({
      active: false,
      reason: "revoked",
    });

    // Repeating it is harmless.
    await data(urlA, "mutation { revokeMyTokens { revokedAt } }", ann);
    for (const url of [urlA, urlB]) {
      const next = (await data(url, MY_TOKEN, ann)).issueMyToken;
      expect(next.user.id).toBe(first.user.id);
      expect(next.token).not.toBe(first.token);
      expect((await introspect(a.acs, next.token)).active).toBe(true);
    }
  });

  it("deleteMe erases the identity, its tokens and its mapping; the next issueMyToken makes exactly one new identity", async () => {
    const bo = await issuer.sign({}, { subject: "bo" });
    const old = (await data(urlA, MY_TOKEN, bo)).issueMyToken;

    const deleted = (await data(urlB, "mutation { deleteMe { userId deletedAt } }", bo)).deleteMe;
    expect(deleted.userId).toBe(old.user.id);
    expect(Date.parse(deleted.deletedAt)).not.toBeNaN();
    expect((await data(urlA, ME, bo)).me).toEqual({ subject: "bo", communicationUser: null });
    expect(await introspect(a.acs, old.token)).toMatchObject({ active: false, reason: "deleted" });

    // Nothing left to erase: said plainly, and nothing changes.
    const again = await gql(urlA, "mutation { deleteMe { userId } }", bo);
    expect(again.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");

    const creates = counters().createIdentity;
    // Concurrent first calls on both instances: the mapping store's reservation decides.
    const fresh = await Promise.all([
      data(urlA, MY_TOKEN, bo),
      data(urlB, MY_TOKEN, bo),
      data(urlA, MY_TOKEN, bo),
    ]);
    const ids = new Set(fresh.map((d) => d.issueMyToken.user.id));
    expect(ids.size).toBe(1);
    expect(ids.has(old.user.id)).toBe(false);
    expect(counters().createIdentity - creates).toBe(1);
  });

  it("lets a user revoke the tokens of an identity that was theirs, and no one else's", async () => {
    const eve = await issuer.sign({}, { subject: "eve" });
    const old = (await data(urlA, MY_TOKEN, eve)).issueMyToken;
    await data(urlA, "mutation { deleteMe { userId } }", eve);
    await data(urlA, MY_TOKEN, eve);
    const REVOKE = "mutation ($u: ID!) { revokeTokens(userId: $u) { revokedAt } }";
    // ACS answers NOT_FOUND for the deleted identity: the point is that rights let it through.
    const mine = await gql(urlB, REVOKE, eve, { u: old.user.id });
    expect(mine.errors?.[0]?.extensions?.code).not.toBe("FORBIDDEN");
    const fay = await issuer.sign({}, { subject: "fay" });
    const theirs = await gql(urlB, REVOKE, fay, { u: old.user.id });
    expect(theirs.errors?.[0]?.extensions?.code).toBe("FORBIDDEN");
  });

  it("answers NOT_FOUND for revokeMyTokens before the caller has an identity", async () => {
    const cy = await issuer.sign({}, { subject: "cy" });
    const result = await gql(urlA, "mutation { revokeMyTokens { revokedAt } }", cy);
    expect(result.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
  });

  it("serves a subject longer than an external id may be: the identity is recorded without one", async () => {
    // Signing in takes a `sub` of up to 1024 characters; the directory's external ids are up to
    // 256. Such a caller is no less a user: tokens, and `me` with its own identity.
    const subject = "long-".repeat(60);
    const long = await issuer.sign({}, { subject });
    const minted = (await data(urlA, MY_TOKEN, long)).issueMyToken;
    expect(minted.token).toEqual(expect.any(String));
    const { me } = await data(urlA, "{ me { subject communicationUser { id externalId } } }", long);
    expect(me).toEqual({
      subject,
      communicationUser: { id: minted.user.id, externalId: null },
    });
  });

  it("tells a client the ACS endpoint its ChatClient needs, and never the key", async () => {
    const dee = await issuer.sign({}, { subject: "dee" });
    const { acsEndpoint } = await data(urlA, "{ acsEndpoint }", dee);
    expect(acsEndpoint).toBe(a.acs.endpoint);
    expect(acsEndpoint).not.toContain(a.acs.accessKey);
  });
});

describe("Teams users", () => {
  const APP_ID = "0b4a2bcd-1111-4c4c-9c9c-8a8a8a8a8a8a";
  const OID = "5e5e5e5e-2222-4d4d-8e8e-7f7f7f7f7f7f";
  const OTHER_OID = "6f6f6f6f-3333-4e4e-9f9f-808080808080";
  const EXCHANGE = `mutation ($t: String!, $app: ID!, $oid: ID!) {
    exchangeTeamsToken(teamsToken: $t, appId: $app, userObjectId: $oid) { token expiresOn userObjectId }
  }`;

  /** An Entra ID access token's shape, as the Teams client gets it for ACS (not signed here). */
  function teamsToken(claims: { oid: string; exp: number }): string {
    const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
    return `${part({ typ: "JWT", alg: "RS256", kid: "entra" })}.${part({
      aud: "https://auth.msft.communication.azure.com",
      appid: APP_ID,
      ...claims,
    })}.${Buffer.from("signature").toString("base64url")}`;
  }
  const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

  it("exchanges a Teams user's own token, expiring with the Entra token, and never caches it", async () => {
    const exp = inAnHour();
    const me = await issuer.sign({ oid: OID }, { subject: "teams-user" });
    const variables = { t: teamsToken({ oid: OID, exp }), app: APP_ID, oid: OID };
    const before = counters().exchangeTeamsUserAccessToken;
    const first = (await data(urlA, EXCHANGE, me, variables)).exchangeTeamsToken;
    expect(first.userObjectId).toBe(OID);
    expect(Date.parse(first.expiresOn)).toBeLessThanOrEqual(exp * 1000);
    expect((await introspect(a.acs, first.token)).active).toBe(true);
    await data(urlB, EXCHANGE, me, variables);
    expect(counters().exchangeTeamsUserAccessToken - before).toBe(2);
  });

  it("lets an admin exchange for any Teams user", async () => {
    const admin = await issuer.sign({ roles: ["acs.admin"] }, { subject: "ops" });
    const variables = {
      t: teamsToken({ oid: OTHER_OID, exp: inAnHour() }),
      app: APP_ID,
      oid: OTHER_OID,
    };
    expect((await data(urlA, EXCHANGE, admin, variables)).exchangeTeamsToken.userObjectId).toBe(
      OTHER_OID,
    );
  });

  it("refuses a user exchanging for another oid before any upstream call", async () => {
    const me = await issuer.sign({ oid: OID }, { subject: "teams-user" });
    const noOid = await issuer.sign({}, { subject: "plain-user" });
    const before = counters().exchangeTeamsUserAccessToken;
    for (const caller of [me, noOid]) {
      const result = await gql(urlA, EXCHANGE, caller, {
        t: teamsToken({ oid: OTHER_OID, exp: inAnHour() }),
        app: APP_ID,
        oid: OTHER_OID,
      });
      expect(result.errors?.[0]?.extensions?.code).toBe("FORBIDDEN");
    }
    expect(counters().exchangeTeamsUserAccessToken).toBe(before);
  });

  it("answers an expired Teams token with UNAUTHENTICATED naming the Teams token, and bad ids with BAD_USER_INPUT", async () => {
    const me = await issuer.sign({ oid: OID }, { subject: "teams-user" });
    const expired = await gql(urlA, EXCHANGE, me, {
      t: teamsToken({ oid: OID, exp: Math.floor(Date.now() / 1000) - 60 }),
      app: APP_ID,
      oid: OID,
    });
    expect(expired.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
    expect(expired.errors?.[0]?.message).toContain("teamsToken");
    const before = counters().exchangeTeamsUserAccessToken;
    const badApp = await gql(urlA, EXCHANGE, me, {
      t: teamsToken({ oid: OID, exp: inAnHour() }),
      app: "not-a-guid",
      oid: OID,
    });
    expect(badApp.errors?.[0]?.extensions).toMatchObject({
      code: "BAD_USER_INPUT",
      field: "appId",
    });
    expect(counters().exchangeTeamsUserAccessToken).toBe(before);
  });
});
