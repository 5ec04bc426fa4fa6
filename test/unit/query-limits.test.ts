import { buildSchema, getIntrospectionQuery, parse, validate } from "graphql";
import { describe, expect, it } from "vitest";
import { aliasLimit, depthLimit, rootFieldLimit } from "../../src/graphql/query-limits.js";

const schema = buildSchema(`
  type Node { id: ID! child: Node }
  type Query { node: Node a: Int b: Int c: Int d: Int e: Int f: Int }
`);
const check = (query: string, rule: ReturnType<typeof depthLimit>) =>
  validate(schema, parse(query), [rule]).map((e) => e.message);

const nested = (levels: number) =>
  `{ node ${"{ child ".repeat(levels - 2)}{ id }${" }".repeat(levels - 2)} }`;

describe("operation limits", () => {
  it("counts depth from the root field and accepts exactly the maximum", () => {
    expect(check(nested(8), depthLimit(8))).toEqual([]);
    expect(check(nested(9), depthLimit(8))[0]).toContain("9 levels deep");
  });

  it("lets Sandbox's introspection query through under the default depth", () => {
    expect(check(getIntrospectionQuery(), depthLimit(8))).toEqual([]);
  });

  it("counts aliases in fragments and inline fragments, each time they are spread", () => {
    const query = `
      fragment F on Query { x1: a x2: b }
      { ...F ...F ... on Query { y1: c y2: d } z: e }`;
    expect(check(query, aliasLimit(7))).toEqual([]);
    expect(check(query, aliasLimit(6))[0]).toContain("7 aliases");
    const bomb = `{ ${Array.from({ length: 50 }, (_, i) => `n${i}: node { id }`).join(" ")} }`;
    expect(check(bomb, aliasLimit(10))[0]).toContain("50 aliases");
  });

  it("counts root fields through fragments, not __typename", () => {
    expect(check("fragment R on Query { d e f } { a b c ...R }", rootFieldLimit(5))[0]).toContain(
      "6 root fields",
    );
    expect(check("{ __typename a b c d e }", rootFieldLimit(5))).toEqual([]);
  });

  it("terminates on a fragment cycle", () => {
    const cyclic =
      "fragment A on Node { child { ...B } } fragment B on Node { child { ...A } } { node { ...A } }";
    for (const rule of [depthLimit(8), aliasLimit(10), rootFieldLimit(5)]) {
      expect(() => check(cyclic, rule)).not.toThrow();
    }
  });
});
