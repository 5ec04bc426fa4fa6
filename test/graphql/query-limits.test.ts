import { ApolloServer } from "@apollo/server";
import {
  buildSchema,
  getIntrospectionQuery,
  parse,
  specifiedRules,
  validate,
  type ValidationRule,
} from "graphql";
import { describe, expect, it } from "vitest";
import {
  aliasLimit,
  createQueryLimitRules,
  depthLimit,
  rootFieldLimit,
} from "../../src/graphql/query-limits.js";

const sdl = `
  type Node { id: ID! child: Node }
  type AccessToken { token: String! user: Node! }
  type Query { node: Node a: Int b: Int c: Int d: Int e: Int f: Int }
  type Mutation { issueToken(userId: ID): AccessToken! }
`;
const schema = buildSchema(sdl);
const DEFAULTS = {
  maxDepth: 8,
  maxAliases: 10,
  maxRootFields: 5,
  bodyLimitBytes: 32768,
  acsCallsPerWindow: 30,
  adminAcsCallsPerWindow: 0,
  rateLimitWindowSeconds: 60,
};

const check = (query: string, ...rules: ValidationRule[]) =>
  validate(schema, parse(query), rules).map((e) => e.message);

/** `levels` field levels: node, then child levels, then id. */
const nested = (levels: number) =>
  `{ node ${"{ child ".repeat(levels - 2)}{ id }${" }".repeat(levels - 2)} }`;

const fiftyAliasedIssueTokens = `mutation Mint { ${Array.from(
  { length: 50 },
  (_, i) => `t${i}: issueToken(userId: "u${i}") { token }`,
).join(" ")} }`;

describe("the depth limit", () => {
  it("counts depth from the root field and accepts exactly the maximum", () => {
    expect(check(nested(8), depthLimit(8))).toEqual([]);
    expect(check(nested(9), depthLimit(8))).toEqual([
      "The operation is 9 levels deep; at most 8 are allowed.",
    ]);
  });

  it("follows fragments and inline fragments at the depth they are spread", () => {
    const query = `
      fragment Deep on Node { child { child { child { id } } } }
      query Q { node { child { ... on Node { child { ...Deep } } } } }`;
    // node(1) child(2) child(3) + Deep's 4 levels = 7
    expect(check(query, depthLimit(7))).toEqual([]);
    expect(check(query, depthLimit(6))).toEqual([
      "The operation Q is 7 levels deep; at most 6 are allowed.",
    ]);
  });

  it("lets Sandbox's introspection query through under the default limits", () => {
    const introspection = getIntrospectionQuery({
      descriptions: true,
      specifiedByUrl: true,
      directiveIsRepeatable: true,
      schemaDescription: true,
      inputValueDeprecation: true,
      oneOf: true,
    });
    expect(check(introspection, ...createQueryLimitRules(DEFAULTS))).toEqual([]);
    expect(check(getIntrospectionQuery(), depthLimit(8))).toEqual([]);
    // What bounds introspection instead is graphql's own MaxIntrospectionDepthRule (part of
    // specifiedRules, which Apollo always runs): a recursive introspection query is refused there.
    const recursive = `{ __schema { types { ${"fields { type { ".repeat(4)}name${" } }".repeat(4)} } } }`;
    expect(check(recursive, depthLimit(8))).toEqual([]);
    expect(check(recursive, ...specifiedRules)).toEqual(["Maximum introspection depth exceeded"]);
    // Exempt is only what is below __schema / __type, not a deep query beside them.
    expect(check(`{ __typename ${nested(9).slice(1)}`, depthLimit(8))).toHaveLength(1);
  });
});

describe("the alias limit", () => {
  it("refuses 50 aliased issueToken fields", () => {
    expect(check(fiftyAliasedIssueTokens, aliasLimit(10))).toEqual([
      "The operation Mint uses 50 aliases; at most 10 are allowed.",
    ]);
  });

  it("counts aliases in fragments and inline fragments, each time they are spread", () => {
    const query = `
      fragment F on Query { x1: a x2: b }
      { ...F ...F ... on Query { y1: c y2: d } z: e }`;
    expect(check(query, aliasLimit(7))).toEqual([]);
    expect(check(query, aliasLimit(6))).toEqual([
      "The operation uses 7 aliases; at most 6 are allowed.",
    ]);
  });

  it("counts aliases below the root and inside introspection", () => {
    expect(check("{ node { i1: id i2: id c: child { id } } }", aliasLimit(2))).toHaveLength(1);
    expect(
      check("{ __schema { t1: types { name } t2: types { name } } }", aliasLimit(1)),
    ).toHaveLength(1);
  });

  it("measures an exponential fragment bomb in linear time", () => {
    const levels = 60;
    const fragments = Array.from({ length: levels }, (_, i) =>
      i < levels - 1
        ? `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`
        : `fragment F${i} on Query { x: a }`,
    ).join("\n");
    const started = performance.now();
    const errors = check(`${fragments}\n{ ...F0 }`, ...createQueryLimitRules(DEFAULTS));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(errors).toContain(
      "The operation uses more than 1000000 aliases; at most 10 are allowed.",
    );
  });
});

describe("the root field limit", () => {
  it("counts root fields through fragments and inline fragments, not __typename", () => {
    expect(
      check("fragment R on Query { d e } { a b ...R ... on Query { c f } }", rootFieldLimit(5)),
    ).toEqual(["The operation selects 6 root fields; at most 5 are allowed."]);
    expect(check("{ __typename a b c d e }", rootFieldLimit(5))).toEqual([]);
    expect(check("{ node { id child { id } } a b c d }", rootFieldLimit(5))).toEqual([]);
  });

  it("checks every operation of a document on its own", () => {
    const document = "query One { a b } query Two { a b c }";
    expect(check(document, rootFieldLimit(2))).toEqual([
      "The operation Two selects 3 root fields; at most 2 are allowed.",
    ]);
  });
});

describe("fragment cycles", () => {
  it("terminate alone and beside graphql's own rules, which report the cycle", () => {
    const cyclic =
      "fragment A on Node { child { ...B } } fragment B on Node { child { ...A } } { node { ...A } }";
    for (const rule of createQueryLimitRules(DEFAULTS)) {
      expect(check(cyclic, rule)).toEqual([]);
    }
    const self = "fragment S on Query { a ...S } { ...S }";
    expect(check(self, ...createQueryLimitRules(DEFAULTS))).toEqual([]);
    const all = check(cyclic, ...specifiedRules, ...createQueryLimitRules(DEFAULTS));
    expect(all.some((m) => m.includes("Cannot spread fragment"))).toBe(true);
  });
});

describe("the limits in Apollo Server", () => {
  it("refuse before any resolver runs, with code GRAPHQL_VALIDATION_FAILED", async () => {
    let calls = 0;
    const server = new ApolloServer({
      typeDefs: sdl,
      resolvers: {
        Mutation: {
          issueToken: () => {
            calls++;
            return { token: "t", user: { id: "u" } };
          },
        },
      },
      validationRules: createQueryLimitRules(DEFAULTS),
    });
    await server.start();
    try {
      const response = await server.executeOperation({ query: fiftyAliasedIssueTokens });
      const body = response.body as { kind: "single"; singleResult: any };
      expect(body.singleResult.data).toBeUndefined();
      const codes = body.singleResult.errors.map((e: any) => e.extensions.code);
      expect(new Set(codes)).toEqual(new Set(["GRAPHQL_VALIDATION_FAILED"]));
      expect(body.singleResult.errors.map((e: any) => e.message)).toEqual([
        "The operation Mint uses 50 aliases; at most 10 are allowed.",
        "The operation Mint selects 50 root fields; at most 5 are allowed.",
      ]);
      expect(calls).toBe(0);

      const fine = await server.executeOperation({ query: "mutation { a: issueToken { token } }" });
      expect((fine.body as any).singleResult.errors).toBeUndefined();
      expect(calls).toBe(1);
    } finally {
      await server.stop();
    }
  });
});
