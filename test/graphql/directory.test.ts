import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { startGateway } from "../helpers/gateway.js";
import { startTestIssuer, type TestIssuer } from "../helpers/jwks.js";

/**
 * The directory's GraphQL surface end to end: an in-process gateway (embedded emulator, embedded
 * directory) with JWT callers, requests through Fastify (`inject`), so authentication, rights,
 * the services and error formatting are the real ones.
 */
let issuer: TestIssuer;
let app: App;
let admin: string;
let ann: string;

beforeAll(async () => {
  issuer = await startTestIssuer();
  app = await startGateway({
    AUTH_MODE: "jwt",
    // An in-memory directory (opened on first use): a test gateway keeps none unless told.
    DIRECTORY_DATA_DIR: "memory",
    AUTH_JWKS_URL: issuer.jwksUrl,
    AUTH_ISSUER: issuer.issuer,
    AUTH_AUDIENCE: issuer.audience,
  });
  admin = await issuer.sign({ roles: ["acs.admin"] }, { subject: "ops", expiresIn: "1h" });
  ann = await issuer.sign({}, { subject: "ann", expiresIn: "1h" });
  // The embedded directory opens on first use (PGlite's initdb: seconds of CPU): not in a test.
  await data("{ communicationUsers(first: 1) { pageInfo { hasNextPage } } }");
}, 180_000);

afterAll(async () => {
  await app?.close();
  await issuer?.close();
});

interface Result {
  data?: Record<string, any> | null;
  errors?: { message: string; path?: (string | number)[]; extensions?: Record<string, any> }[];
}

async function gql(query: string, variables: Record<string, unknown> = {}, token = admin) {
  const response = await app.server.fastify.inject({
    method: "POST",
    url: "/graphql",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    payload: JSON.stringify({ query, variables }),
  });
  return response.json() as Result;
}

async function data(query: string, variables: Record<string, unknown> = {}, token = admin) {
  const result = await gql(query, variables, token);
  expect(result.errors).toBeUndefined();
  return result.data!;
}

const codeOf = (result: Result) => result.errors?.[0]?.extensions?.code;

const CREATE = `mutation ($externalId: String, $displayName: String) {
  createUser(externalId: $externalId, displayName: $displayName) { id externalId displayName createdAt }
}`;
const PAGE = `query ($first: Int, $after: String, $filter: CommunicationUserFilter) {
  communicationUsers(first: $first, after: $after, filter: $filter) {
    edges { cursor node { id externalId createdAt deletedAt } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const ONE = `query ($id: ID, $externalId: String) {
  communicationUser(id: $id, externalId: $externalId) { id externalId displayName deletedAt }
}`;
const UPDATE = `mutation ($userId: ID!, $displayName: String) {
  updateUser(userId: $userId, displayName: $displayName) { id externalId displayName }
}`;

describe("the directory through GraphQL", () => {
  it("createUser is idempotent by externalId: one ACS identity", async () => {
    const before = app.emulator!.counters.createIdentity;
    const first = (await data(CREATE, { externalId: "e2e-idem", displayName: "Idem" })).createUser;
    expect(first).toMatchObject({ externalId: "e2e-idem", displayName: "Idem" });
    const again = (await data(CREATE, { externalId: "e2e-idem" })).createUser;
    expect(again.id).toBe(first.id);
    expect(app.emulator!.counters.createIdentity).toBe(before + 1);
  });

  it("pages 120 identities with first: 50 (each once, in order)", async () => {
    const created: string[] = [];
    for (let i = 0; i < 120; i++) {
      created.push(
        (await data(CREATE, { externalId: `e2e-page-${String(i).padStart(3, "0")}` })).createUser
          .id,
      );
    }
    const seen: { id: string; createdAt: string }[] = [];
    const sizes: number[] = [];
    let after: string | null = null;
    for (;;) {
      const page: any = (
        await data(PAGE, { first: 50, after, filter: { externalIdPrefix: "e2e-page-" } })
      ).communicationUsers;
      sizes.push(page.edges.length);
      seen.push(...page.edges.map((edge: any) => edge.node));
      if (!page.pageInfo.hasNextPage) {
        break;
      }
      after = page.pageInfo.endCursor;
    }
    expect(sizes).toEqual([50, 50, 20]);
    expect(new Set(seen.map((n) => n.id)).size).toBe(120);
    expect(seen.map((n) => n.id).sort()).toEqual([...created].sort());
    for (let i = 1; i < seen.length; i++) {
      const [a, b] = [seen[i - 1]!, seen[i]!];
      expect(a.createdAt < b.createdAt || (a.createdAt === b.createdAt && a.id < b.id)).toBe(true);
    }
  }, 120_000);

  it("filters by externalIdPrefix and includeDeleted; communicationUser by id and externalId", async () => {
    const kept = (await data(CREATE, { externalId: "e2e-filter-1" })).createUser;
    const gone = (await data(CREATE, { externalId: "e2e-filter-2" })).createUser;
    await data("mutation ($u: ID!) { deleteUser(userId: $u) { deletedAt } }", { u: gone.id });
    const live = (await data(PAGE, { filter: { externalIdPrefix: "e2e-filter-" } }))
      .communicationUsers;
    expect(live.edges.map((e: any) => e.node.id)).toEqual([kept.id]);
    const all = (
      await data(PAGE, { filter: { externalIdPrefix: "e2e-filter-", includeDeleted: true } })
    ).communicationUsers;
    expect(all.edges.map((e: any) => [e.node.id, e.node.deletedAt !== null])).toEqual([
      [kept.id, false],
      [gone.id, true],
    ]);
    expect((await data(ONE, { externalId: "e2e-filter-1" })).communicationUser.id).toBe(kept.id);
    expect((await data(ONE, { id: kept.id })).communicationUser.externalId).toBe("e2e-filter-1");
    expect((await data(ONE, { externalId: "e2e-filter-2" })).communicationUser).toBeNull();
    expect((await data(ONE, { id: gone.id })).communicationUser.deletedAt).not.toBeNull();
    expect(codeOf(await gql(ONE, {}))).toBe("BAD_USER_INPUT");
    expect(codeOf(await gql(ONE, { id: kept.id, externalId: "e2e-filter-1" }))).toBe(
      "BAD_USER_INPUT",
    );
    const tooMany = await gql(PAGE, { first: 101 });
    expect(tooMany.errors?.[0]?.extensions).toMatchObject({
      code: "BAD_USER_INPUT",
      reason: "BAD_PAGE_SIZE",
      field: "first",
    });
    for (const after of [
      "garbage",
      // Well formed, but a date PostgreSQL refuses to compare (year 0).
      Buffer.from(JSON.stringify([1, "0000-01-01T00:00:00.000Z", "8:acs:x"])).toString("base64url"),
    ]) {
      expect((await gql(PAGE, { after })).errors?.[0]?.extensions).toMatchObject({
        code: "BAD_USER_INPUT",
        reason: "BAD_CURSOR",
      });
    }
  });

  it("updateUser changes the display name; NOT_FOUND for an unknown user", async () => {
    const { id } = (await data(CREATE, { externalId: "e2e-update" })).createUser;
    expect((await data(UPDATE, { userId: id, displayName: "Renamed" })).updateUser).toEqual({
      id,
      externalId: "e2e-update",
      displayName: "Renamed",
    });
    expect((await data(ONE, { id })).communicationUser.displayName).toBe("Renamed");
    const unknown = `8:acs:${app.emulator!.resourceId}_00000000-0000-0000-0000-000000000000`;
    expect(codeOf(await gql(UPDATE, { userId: unknown, displayName: "x" }))).toBe("NOT_FOUND");
  });

  it("issueToken's user carries its directory fields", async () => {
    const { id } = (await data(CREATE, { externalId: "e2e-token", displayName: "T" })).createUser;
    const issued = await data(
      `mutation ($u: ID) { issueToken(userId: $u, scopes: [VOIP]) { user { id externalId displayName } } }`,
      { u: id },
    );
    expect(issued.issueToken.user).toEqual({ id, externalId: "e2e-token", displayName: "T" });
  });
});

describe("an end user", () => {
  it("is refused FORBIDDEN on each admin field", async () => {
    const { id } = (await data(CREATE, { externalId: "e2e-forbidden" })).createUser;
    for (const [query, variables] of [
      [ONE, { id }],
      [ONE, { externalId: "e2e-forbidden" }],
      [PAGE, {}],
      [UPDATE, { userId: id, displayName: "x" }],
      [CREATE, { externalId: "e2e-ann-made" }],
    ] as const) {
      expect(codeOf(await gql(query, variables, ann)), query).toBe("FORBIDDEN");
    }
  });

  it("reads their own record through me", async () => {
    const mine = await data("mutation { issueMyToken(scopes: [CHAT]) { user { id } } }", {}, ann);
    const me = await data(
      "{ me { subject communicationUser { id externalId displayName createdAt lastTokenIssuedAt deletedAt } } }",
      {},
      ann,
    );
    expect(me.me.subject).toBe("ann");
    expect(me.me.communicationUser.id).toBe(mine.issueMyToken.user.id);
    expect(me.me.communicationUser.deletedAt).toBeNull();
    expect(Number.isNaN(Date.parse(me.me.communicationUser.createdAt))).toBe(false);
  });
});
