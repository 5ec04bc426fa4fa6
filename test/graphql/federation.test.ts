import { composeServices } from "@apollo/composition";
import { ApolloGateway, LocalGraphQLDataSource, RemoteGraphQLDataSource } from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { buildSubgraphSchema } from "@apollo/subgraph";
import { parse } from "graphql";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { startGateway } from "../helpers/gateway.js";

/**
 * This subgraph composed into a supergraph with a second, small subgraph written here, served by
 * @apollo/gateway in process. The query starts in this subgraph (createUser) and joins the other
 * one through the CommunicationUser entity.
 */
const profilesTypeDefs = parse(`
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])
  type CommunicationUser @key(fields: "id") {
    id: ID!
    nickname: String!
  }
`);
const profiles = buildSubgraphSchema({
  typeDefs: profilesTypeDefs,
  resolvers: {
    CommunicationUser: {
      __resolveReference: (ref: { id: string }) => ({
        id: ref.id,
        nickname: `User ${ref.id.slice(-4)}`,
      }),
    },
  },
});

let app: App;
let supergraph: ApolloServer;

beforeAll(async () => {
  app = await startGateway({ HOST: "127.0.0.1" });
  const url = await app.listen(0);
  const identitySdl = readFileSync(new URL("../../schema.graphql", import.meta.url), "utf8");
  const composed = composeServices([
    { name: "identity", typeDefs: parse(identitySdl), url },
    { name: "profiles", typeDefs: profilesTypeDefs, url: "http://profiles.invalid/graphql" },
  ]);
  expect(composed.errors ?? []).toEqual([]);
  const gateway = new ApolloGateway({
    supergraphSdl: composed.supergraphSdl!,
    // The identity subgraph is reached over real HTTP, as a router would; the small one in process.
    buildService: ({ name, url: serviceUrl }) =>
      name === "profiles"
        ? new LocalGraphQLDataSource(profiles)
        : new RemoteGraphQLDataSource({ url: serviceUrl }),
  });
  supergraph = new ApolloServer({ gateway });
  await supergraph.start();
});

afterAll(async () => {
  await supergraph?.stop();
  await app?.close();
});

describe("composition into a supergraph", () => {
  it("joins this subgraph's createUser with another subgraph's field on CommunicationUser", async () => {
    const response = await supergraph.executeOperation({
      query: "mutation { createUser { id nickname } }",
    });
    expect(response.body.kind).toBe("single");
    const result = (response.body as { singleResult: { data?: any; errors?: unknown } })
      .singleResult;
    expect(result.errors).toBeUndefined();
    expect(result.data.createUser.id).toMatch(/^8:acs:/);
    expect(result.data.createUser.nickname).toBe(`User ${result.data.createUser.id.slice(-4)}`);
  });
});
