import { randomUUID } from "node:crypto";
import { graphql, type GraphQLSchema } from "graphql";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Caller } from "../../src/auth/caller.js";
import {
  createDirectory,
  DirectoryInputError,
  type Directory,
  type DirectoryIdentity,
} from "../../src/directory/index.js";
import { DomainError, invalidInput, notFound } from "../../src/errors.js";
import type { GatewayContext } from "../../src/graphql/context.js";
import { buildGatewaySchema } from "../../src/graphql/schema.js";
import type { CreateUserInput, IdentityDirectory } from "../../src/identity/identity-directory.js";
import type { Actor } from "../../src/tokens/upstream-budget.js";
import { pgliteBackend } from "../directory/support.js";

/**
 * The directory's GraphQL surface over the executable subgraph schema, with a hand-built context:
 * a real directory (PGlite) behind the IdentityDirectory interface the app wires, a token service
 * whose createUser only records, and callers made here. What the in-process gateways test end to
 * end (directory.test.ts, federation-directory.test.ts), without ACS or the app's wiring.
 */
const RESOURCE = "2dee53b4-368b-45b4-ab52-8493fb117652";
const newId = () => `8:acs:${RESOURCE}_${randomUUID()}`;

let schema: GraphQLSchema;
let directory: Directory;
let reads: { get: number; getByExternalId: number };
let creates: number;

/** The adapter's contract: domain errors (BAD_USER_INPUT, NOT_FOUND), counted reads. */
function identityDirectory(): IdentityDirectory {
  const mapped = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (error) {
      throw error instanceof DirectoryInputError ? invalidInput(error.message) : error;
    }
  };
  return {
    get: (id) => (reads.get++, directory.get(id)),
    getByExternalId: (externalId) => (
      reads.getByExternalId++,
      directory.getByExternalId(externalId)
    ),
    list: (args) => mapped(() => directory.list(args)),
    async updateDisplayName(actor, id, displayName) {
      const identity = await mapped(() =>
        directory.updateDisplayName(id, displayName, `admin:${actor.subject}`),
      );
      if (!identity) {
        throw notFound();
      }
      return identity;
    },
  };
}

function caller(subject: string, isAdmin: boolean): Caller {
  return { subject, issuer: "https://issuer.test/", roles: [], isAdmin, key: `key-${subject}` };
}

/** A request's context: `own` is the caller's own identity (self-service). */
function contextFor(who: Caller, own?: string): GatewayContext {
  const actor: Actor = { key: who.key, isAdmin: who.isAdmin, subject: who.subject };
  const tokens = {
    async createUser(_actor: Actor, input: CreateUserInput): Promise<DirectoryIdentity> {
      const create = async () => (creates++, newId());
      if (input.externalId !== undefined) {
        return (
          await directory.createOnce(
            {
              externalId: input.externalId,
              displayName: input.displayName ?? null,
              origin: "admin",
            },
            create,
          )
        ).identity;
      }
      return (
        await directory.recordCreated({
          id: await create(),
          displayName: input.displayName ?? null,
          origin: "admin",
        })
      ).identity;
    },
  };
  return {
    caller: who,
    actor,
    requestId: randomUUID(),
    startedAt: performance.now(),
    schemaReadable: false,
    acsEndpoint: "https://example.communication.azure.com/",
    ownUserId: async () => own,
    ownership: {
      isKnownDeleted: async () => false,
      ownsOrOwned: async () => false,
    },
    tokens,
    directory: identityDirectory(),
  } as unknown as GatewayContext;
}

const ADMIN = caller("ops", true);
const ANN = caller("ann", false);

async function exec(
  query: string,
  variables: Record<string, unknown> = {},
  context: GatewayContext = contextFor(ADMIN),
) {
  const result = await graphql({
    schema,
    source: query,
    variableValues: variables,
    contextValue: context,
  });
  const errors = result.errors?.map((error) => {
    const original = error.originalError;
    return {
      path: error.path,
      message: error.message,
      code: original instanceof DomainError ? original.kind : "unexpected",
    };
  });
  return { data: result.data as Record<string, any> | null | undefined, errors };
}

async function data(
  query: string,
  variables: Record<string, unknown> = {},
  context?: GatewayContext,
) {
  const result = await exec(query, variables, context);
  expect(result.errors).toBeUndefined();
  return result.data!;
}

const CREATE = `mutation ($externalId: String, $displayName: String) {
  createUser(externalId: $externalId, displayName: $displayName) { id externalId displayName createdAt deletedAt }
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
const ENTITIES = `query ($r: [_Any!]!) {
  _entities(representations: $r) { ... on CommunicationUser { id externalId displayName } }
}`;

beforeAll(async () => {
  schema = await buildGatewaySchema();
  await pgliteBackend().setup();
}, 120_000);

beforeEach(async () => {
  const { a } = await pgliteBackend().fresh();
  directory = createDirectory({ db: a });
  reads = { get: 0, getByExternalId: 0 };
  creates = 0;
});

describe("createUser and the directory's fields", () => {
  it("is idempotent by externalId and answers from the record it made", async () => {
    const first = (await data(CREATE, { externalId: "app-1", displayName: "Ann" })).createUser;
    expect(first).toMatchObject({ externalId: "app-1", displayName: "Ann", deletedAt: null });
    expect(Number.isNaN(Date.parse(first.createdAt))).toBe(false);
    const again = (await data(CREATE, { externalId: "app-1", displayName: "Other" })).createUser;
    expect(again).toEqual(first);
    expect(creates).toBe(1);
    expect(reads.get).toBe(0);
    const anonymous = (await data(CREATE)).createUser;
    expect(anonymous).toMatchObject({ externalId: null, displayName: null });
  });

  it("refuses bad external ids and display names before any create", async () => {
    for (const variables of [
      { externalId: "" },
      { externalId: "x".repeat(257) },
      { externalId: "line\nbreak" },
      { externalId: "nul\u0000" },
      { externalId: "ok", displayName: "y".repeat(257) },
      { externalId: "ok", displayName: "tab\there" },
    ]) {
      const { errors } = await exec(CREATE, variables);
      expect(errors?.[0]?.code, JSON.stringify(variables)).toBe("invalid-input");
    }
    expect(creates).toBe(0);
    const fine = (await data(CREATE, { externalId: "é ü 名前 %_ x".padEnd(256, "z") })).createUser;
    expect(fine.externalId).toHaveLength(256);
  });

  it("reads a payload's record once per id and request, however many fields ask", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push((await data(CREATE, { externalId: `n1-${i}` })).createUser.id);
    }
    const representations = [...ids, ...ids, ids[0]].map((id) => ({
      __typename: "CommunicationUser",
      id,
    }));
    const result = await data(ENTITIES, { r: representations });
    expect(result._entities.map((u: { externalId: string }) => u.externalId)).toEqual([
      "n1-0",
      "n1-1",
      "n1-2",
      "n1-0",
      "n1-1",
      "n1-2",
      "n1-0",
    ]);
    expect(reads.get).toBe(3);
    // Entities asked for their id alone need no read at all.
    reads.get = 0;
    await data(
      "query ($r: [_Any!]!) { _entities(representations: $r) { ... on CommunicationUser { id } } }",
      {
        r: representations,
      },
    );
    expect(reads.get).toBe(0);
  });
});

describe("communicationUsers", () => {
  it("pages 120 identities with first: 50, each once, in order", async () => {
    for (let i = 0; i < 120; i++) {
      await data(CREATE, { externalId: `page-${String(i).padStart(3, "0")}` });
    }
    await data(CREATE, { externalId: "other-1" });
    const seen: { id: string; externalId: string; createdAt: string }[] = [];
    const sizes: number[] = [];
    let after: string | null = null;
    for (;;) {
      const page: any = (
        await data(PAGE, { first: 50, after, filter: { externalIdPrefix: "page-" } })
      ).communicationUsers;
      sizes.push(page.edges.length);
      seen.push(...page.edges.map((edge: any) => edge.node));
      expect(page.pageInfo.endCursor).toBe(page.edges.at(-1)?.cursor ?? null);
      if (!page.pageInfo.hasNextPage) {
        break;
      }
      after = page.pageInfo.endCursor;
    }
    expect(sizes).toEqual([50, 50, 20]);
    expect(new Set(seen.map((n) => n.id)).size).toBe(120);
    expect(seen.map((n) => n.externalId).sort()).toEqual(
      Array.from({ length: 120 }, (_, i) => `page-${String(i).padStart(3, "0")}`),
    );
    for (let i = 1; i < seen.length; i++) {
      const [a, b] = [seen[i - 1]!, seen[i]!];
      expect(a.createdAt < b.createdAt || (a.createdAt === b.createdAt && a.id < b.id)).toBe(true);
    }
    // The default page is 20.
    expect((await data(PAGE)).communicationUsers.edges).toHaveLength(20);
  }, 60_000);

  it("filters by prefix literally, and shows deleted identities only when asked", async () => {
    const kept = (await data(CREATE, { externalId: "a%b-1" })).createUser;
    const gone = (await data(CREATE, { externalId: "a%b-2" })).createUser;
    await data(CREATE, { externalId: "axb-3" });
    await directory.markDeleted(gone.id);
    const live = (await data(PAGE, { filter: { externalIdPrefix: "a%b" } })).communicationUsers;
    expect(live.edges.map((e: any) => e.node.id)).toEqual([kept.id]);
    const all = (await data(PAGE, { filter: { externalIdPrefix: "a%b", includeDeleted: true } }))
      .communicationUsers;
    expect(all.edges.map((e: any) => [e.node.id, e.node.deletedAt !== null])).toEqual([
      [kept.id, false],
      [gone.id, true],
    ]);
  });

  it("refuses a bad page size, cursor or prefix with BAD_USER_INPUT", async () => {
    for (const variables of [
      { first: 0 },
      { first: 101 },
      { first: -1 },
      { after: "not-a-cursor" },
      { filter: { externalIdPrefix: "x".repeat(257) } },
    ]) {
      const { errors } = await exec(PAGE, variables);
      expect(errors?.[0]?.code, JSON.stringify(variables)).toBe("invalid-input");
    }
    expect((await data(PAGE, { first: 100 })).communicationUsers.edges).toEqual([]);
  });
});

describe("communicationUser and updateUser", () => {
  it("finds one by id (deleted too) or by externalId (live only); null when unknown", async () => {
    const user = (await data(CREATE, { externalId: "find-me", displayName: "F" })).createUser;
    expect((await data(ONE, { id: user.id })).communicationUser).toMatchObject({
      externalId: "find-me",
      displayName: "F",
    });
    expect((await data(ONE, { externalId: "find-me" })).communicationUser.id).toBe(user.id);
    expect((await data(ONE, { externalId: "nobody" })).communicationUser).toBeNull();
    expect((await data(ONE, { id: newId() })).communicationUser).toBeNull();
    await directory.markDeleted(user.id);
    expect((await data(ONE, { externalId: "find-me" })).communicationUser).toBeNull();
    expect((await data(ONE, { id: user.id })).communicationUser.deletedAt).not.toBeNull();
    for (const variables of [{}, { id: user.id, externalId: "find-me" }, { id: "garbage" }]) {
      expect((await exec(ONE, variables)).errors?.[0]?.code, JSON.stringify(variables)).toBe(
        "invalid-input",
      );
    }
  });

  it("sets, keeps and clears a display name; NOT_FOUND for an unknown identity", async () => {
    const UPDATE = `mutation ($userId: ID!, $displayName: String) {
      updateUser(userId: $userId, displayName: $displayName) { id externalId displayName }
    }`;
    const UPDATE_ABSENT = `mutation ($userId: ID!) { updateUser(userId: $userId) { displayName } }`;
    const { id } = (await data(CREATE, { externalId: "rename" })).createUser;
    expect((await data(UPDATE, { userId: id, displayName: "New" })).updateUser).toEqual({
      id,
      externalId: "rename",
      displayName: "New",
    });
    expect((await data(UPDATE_ABSENT, { userId: id })).updateUser.displayName).toBe("New");
    expect((await data(ONE, { id })).communicationUser.displayName).toBe("New");
    expect((await data(UPDATE, { userId: id, displayName: "" })).updateUser.displayName).toBeNull();
    expect((await exec(UPDATE, { userId: newId(), displayName: "x" })).errors?.[0]?.code).toBe(
      "not-found",
    );
    expect((await exec(UPDATE, { userId: "bogus", displayName: "x" })).errors?.[0]?.code).toBe(
      "invalid-input",
    );
  });
});

describe("rights", () => {
  it("refuses every admin field to an end user, who reads their own record through me", async () => {
    const own = (await data(CREATE, { externalId: "ann@app", displayName: "Ann" })).createUser;
    const other = (await data(CREATE, { externalId: "bob@app" })).createUser;
    const ann = contextFor(ANN, own.id);
    for (const [query, variables] of [
      [ONE, { id: own.id }],
      [ONE, { externalId: "ann@app" }],
      [PAGE, {}],
      ['mutation { updateUser(userId: "' + own.id + '", displayName: "x") { id } }', {}],
      [CREATE, { externalId: "mine" }],
    ] as const) {
      const { errors } = await exec(query, variables, contextFor(ANN, own.id));
      expect(errors?.[0]?.code, query).toBe("forbidden");
    }
    const me = await data(
      "{ me { subject communicationUser { id externalId displayName createdAt } } }",
      {},
      ann,
    );
    expect(me.me).toMatchObject({
      subject: "ann",
      communicationUser: { id: own.id, externalId: "ann@app", displayName: "Ann" },
    });
    // _entities by externalId: their own; another's or an unknown one alike FORBIDDEN.
    const entities = await exec(
      ENTITIES,
      {
        r: [
          { __typename: "CommunicationUser", externalId: "ann@app" },
          { __typename: "CommunicationUser", externalId: "bob@app" },
          { __typename: "CommunicationUser", externalId: "nobody@app" },
        ],
      },
      contextFor(ANN, own.id),
    );
    expect(entities.data?._entities).toEqual([
      { id: own.id, externalId: "ann@app", displayName: "Ann" },
      null,
      null,
    ]);
    expect(entities.errors?.map((e) => [e.path?.[1], e.code])).toEqual([
      [1, "forbidden"],
      [2, "forbidden"],
    ]);
    // Not the message either: it would tell which external ids exist.
    expect(entities.errors?.[0]?.message).toBe(entities.errors?.[1]?.message);
    // An admin resolves any, and null for an unknown external id.
    const admin = await data(ENTITIES, {
      r: [
        { __typename: "CommunicationUser", externalId: "bob@app" },
        { __typename: "CommunicationUser", externalId: "nobody@app" },
      ],
    });
    expect(admin._entities).toEqual([
      { id: other.id, externalId: "bob@app", displayName: null },
      null,
    ]);
    const neither = await exec(ENTITIES, { r: [{ __typename: "CommunicationUser" }] });
    expect(neither.errors?.[0]?.code).toBe("invalid-input");
  });
});
