import { composeServices } from "@apollo/composition";
import {
  ApolloGateway,
  LocalGraphQLDataSource,
  RemoteGraphQLDataSource,
  type GraphQLDataSourceProcessOptions,
} from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { buildSubgraphSchema } from "@apollo/subgraph";
import { parse } from "graphql";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { startGateway } from "../helpers/gateway.js";
import { startTestIssuer, type TestIssuer } from "../helpers/jwks.js";

/**
 * A supergraph whose own `User` type links to the identity by the app's id: a small users
 * subgraph written here returns `{ __typename: "CommunicationUser", externalId }`, and the router
 * (@apollo/gateway, in process) resolves the rest through this subgraph's `@key(fields:
 * "externalId")`. This subgraph is the real gateway, reached through Fastify's `inject`.
 */
const usersTypeDefs = parse(`
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])
  type Query {
    user(id: ID!): User
  }
  type User @key(fields: "id") {
    id: ID!
    name: String!
    externalId: String!
    communication: CommunicationUser
  }
  type CommunicationUser @key(fields: "externalId", resolvable: false) {
    externalId: String
  }
`);
const people = new Map([
  ["u1", { id: "u1", name: "Ann", externalId: "fed-ann" }],
  ["u2", { id: "u2", name: "Nobody", externalId: "fed-nobody" }],
]);
const users = buildSubgraphSchema({
  typeDefs: usersTypeDefs,
  resolvers: {
    Query: { user: (_: unknown, { id }: { id: string }) => people.get(id) ?? null },
    User: {
      communication: (user: { externalId: string }) => ({
        __typename: "CommunicationUser",
        externalId: user.externalId,
      }),
    },
  },
});

/** The gateway as a subgraph, in process: the router's request through Fastify. */
class InjectDataSource extends RemoteGraphQLDataSource {
  constructor(
    private readonly app: App,
    private readonly token: string,
  ) {
    super({ url: "http://identity.local/graphql" });
  }
  override async process(options: GraphQLDataSourceProcessOptions) {
    const response = await this.app.server.fastify.inject({
      method: "POST",
      url: "/graphql",
      headers: { "content-type": "application/json", authorization: `Bearer ${this.token}` },
      payload: JSON.stringify(options.request),
    });
    return response.json();
  }
}

let issuer: TestIssuer;
let app: App;
let supergraph: ApolloServer;
let admin: string;

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
  admin = await issuer.sign({ roles: ["acs.admin"] }, { subject: "router", expiresIn: "1h" });
  const identitySdl = readFileSync(new URL("../../schema.graphql", import.meta.url), "utf8");
  const composed = composeServices([
    { name: "identity", typeDefs: parse(identitySdl), url: "http://identity.local/graphql" },
    { name: "users", typeDefs: usersTypeDefs, url: "http://users.local/graphql" },
  ]);
  expect(composed.errors ?? []).toEqual([]);
  const gateway = new ApolloGateway({
    supergraphSdl: composed.supergraphSdl!,
    buildService: ({ name }) =>
      name === "users" ? new LocalGraphQLDataSource(users) : new InjectDataSource(app, admin),
  });
  supergraph = new ApolloServer({ gateway });
  await supergraph.start();
  // The embedded directory opens on first use (PGlite's initdb: seconds of CPU): not in a test.
  await app.server.fastify.inject({
    method: "POST",
    url: "/graphql",
    headers: { "content-type": "application/json", authorization: `Bearer ${admin}` },
    payload: JSON.stringify({ query: "{ communicationUsers(first: 1) { edges { cursor } } }" }),
  });
}, 180_000);

afterAll(async () => {
  await supergraph?.stop();
  await app?.close();
  await issuer?.close();
});

async function run(query: string, variables: Record<string, unknown> = {}) {
  const response = await supergraph.executeOperation({ query, variables });
  expect(response.body.kind).toBe("single");
  return (response.body as { singleResult: { data?: any; errors?: unknown } }).singleResult;
}

describe("a users subgraph that links by externalId", () => {
  it("composes: CommunicationUser has both keys", () => {
    const sdl = readFileSync(new URL("../../schema.graphql", import.meta.url), "utf8");
    expect(sdl).toMatch(/@key\(fields: "id"\)\s+@key\(fields: "externalId"\)/);
  });

  it("queries a user's communication identity through the router", async () => {
    const created = await app.server.fastify.inject({
      method: "POST",
      url: "/graphql",
      headers: { "content-type": "application/json", authorization: `Bearer ${admin}` },
      payload: JSON.stringify({
        query: `mutation { createUser(externalId: "fed-ann", displayName: "Ann A.") { id } }`,
      }),
    });
    const id = created.json().data.createUser.id as string;
    const result = await run(`{
      ann: user(id: "u1") { name communication { id externalId displayName createdAt } }
      nobody: user(id: "u2") { name communication { id externalId } }
    }`);
    expect(result.errors).toBeUndefined();
    expect(result.data.ann).toMatchObject({
      name: "Ann",
      communication: { id, externalId: "fed-ann", displayName: "Ann A." },
    });
    expect(result.data.nobody).toEqual({ name: "Nobody", communication: null });
  });
});
