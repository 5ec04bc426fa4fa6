import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { createLogger } from "../../src/logger.js";
import { operationsByName } from "../../src/server/persisted-documents.js";
import { startGateway } from "../helpers/gateway.js";

/**
 * An APQ request whose `sha256Hash` is not its text's is the client's mistake: HTTP 400 with
 * PERSISTED_QUERY_HASH_MISMATCH, never INTERNAL_SERVER_ERROR, and no error-level log line.
 */
let app: App;
let logs = "";

beforeAll(async () => {
  const capture = new Writable({
    write(chunk, _encoding, done) {
      logs += chunk.toString();
      done();
    },
  });
  app = await startGateway({}, { logger: createLogger({ level: "trace" }, capture) });
});
afterAll(async () => {
  await app?.close();
});

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

it("answers 50 hash mismatches with HTTP 400 PERSISTED_QUERY_HASH_MISMATCH and no error-level log line", async () => {
  const texts = [
    "{ __typename }",
    // The client package's own text: the direct path hands a wrong hash to Apollo.
    operationsByName().get("IssueMyToken")!,
  ];
  logs = "";
  const answers = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      app.server.fastify.inject({
        method: "POST",
        url: "/graphql",
        headers: { "content-type": "application/json" },
        payload: {
          query: texts[i % 2],
          variables: { scopes: ["CHAT"] },
          extensions: { persistedQuery: { version: 1, sha256Hash: sha256(`other text ${i}`) } },
        },
      }),
    ),
  );
  for (const answer of answers) {
    expect(answer.statusCode).toBe(400);
    const [error, ...more] = answer.json().errors;
    expect(more).toEqual([]);
    expect(error.extensions.code).toBe("PERSISTED_QUERY_HASH_MISMATCH");
    expect(error.message).toMatch(/does not match/);
  }
  const lines = logs
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { level: number; msg: string });
  expect(lines.filter((line) => line.level >= 50)).toEqual([]);
  // The matching hash still runs (and registers) the text.
  const good = await app.server.fastify.inject({
    method: "POST",
    url: "/graphql",
    headers: { "content-type": "application/json" },
    payload: {
      query: "{ __typename }",
      extensions: { persistedQuery: { version: 1, sha256Hash: sha256("{ __typename }") } },
    },
  });
  expect(good.statusCode).toBe(200);
  expect(good.json()).toEqual({ data: { __typename: "Query" } });
});
