import { expect, it } from "vitest";
import { graphqlUrl } from "../../src/app/graphql-url.js";

it("names the URL a developer can open for the address the server is bound to", () => {
  expect(graphqlUrl("127.0.0.1", 4000)).toBe("http://127.0.0.1:4000/graphql");
  expect(graphqlUrl("0.0.0.0", 4000)).toBe("http://localhost:4000/graphql");
  expect(graphqlUrl("::", 4000)).toBe("http://localhost:4000/graphql");
  expect(graphqlUrl("::1", 4001)).toBe("http://[::1]:4001/graphql");
});
