import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ApolloServer } from "@apollo/server";
import { buildSchema, parse } from "graphql";
import { describe, expect, it } from "vitest";
import {
  createDocumentStore,
  estimateDocumentBytes,
  type DocumentStoreOptions,
} from "../../src/server/document-store.js";
import { compileScript } from "../helpers/scripts.js";

const schema = buildSchema("type Query { hello: String, me: Me } type Me { subject: String }");

/** An Apollo Server using the store, and how often it had to parse (a store miss). */
async function serverWith(options: DocumentStoreOptions) {
  const store = createDocumentStore(options);
  let parses = 0;
  const server = new ApolloServer({
    schema,
    documentStore: store,
    plugins: [
      {
        async requestDidStart() {
          return {
            async parsingDidStart() {
              parses++;
            },
          };
        },
      },
    ],
  });
  await server.start();
  return {
    store,
    parses: () => parses,
    run: async (query: string) => {
      const response = await server.executeOperation({ query });
      expect(response.body.kind === "single" && response.body.singleResult.errors).toBeFalsy();
    },
    stop: () => server.stop(),
  };
}

describe("the document store", () => {
  it("keeps at most maxEntries documents however many distinct queries clients send", async () => {
    const server = await serverWith({ maxEntries: 200 });
    for (let i = 0; i < 1000; i++) {
      // A user id inlined in the text: every request a new document.
      await server.run(`{ a${i}: hello }`);
    }
    expect(server.store.stats().entries).toBe(200);
    expect(server.parses()).toBe(1000);
    // The most recent documents are served without parsing again; an early one was dropped.
    await server.run("{ a999: hello }");
    expect(server.parses()).toBe(1000);
    await server.run("{ a0: hello }");
    expect(server.parses()).toBe(1001);
    await server.stop();
  });

  it("keeps its estimated bytes within maxBytes, dropping the least recently used first", async () => {
    const maxBytes = 200_000;
    const server = await serverWith({ maxBytes });
    const big = (i: number) =>
      `{ ${Array.from({ length: 20 }, (_, k) => `f${i}x${k}: me { subject }`).join(" ")} }`;
    for (let i = 0; i < 500; i++) {
      await server.run(big(i));
      expect(server.store.stats().bytes).toBeLessThanOrEqual(maxBytes);
    }
    const { entries, bytes } = server.store.stats();
    // The kept ones are the last, all of one length (three-digit i).
    const each = estimateDocumentBytes(parse(big(499)));
    expect(entries).toBe(Math.floor(maxBytes / each));
    expect(bytes).toBe(entries * each);
    await server.stop();
  });

  it("does not keep a document larger than the whole budget", async () => {
    const store = createDocumentStore({ maxBytes: 10_000 });
    await store.set("small", parse("{ hello }"));
    await store.set("huge", parse(`{ ${"hello ".repeat(100)} }`));
    expect(await store.get("huge")).toBeUndefined();
    expect(await store.get("small")).toBeDefined();
    expect(store.stats().entries).toBe(1);
    expect(await store.delete("small")).toBe(true);
    expect(store.stats()).toEqual({ entries: 0, bytes: 0 });
  });

  it("refuses bounds that are not positive whole numbers", () => {
    for (const options of [{ maxEntries: 0 }, { maxEntries: 2.5 }, { maxBytes: -1 }]) {
      expect(() => createDocumentStore(options)).toThrow(TypeError);
    }
  });

  it("estimates at least the heap a parsed document really keeps alive", async () => {
    // Measured in a child with --expose-gc, so collection is forced and the figure is the live heap.
    const script = `
      import { parse } from "graphql";
      import { estimateDocumentBytes } from ${JSON.stringify(fileURLToPath(new URL("../../src/server/document-store.ts", import.meta.url)))};
      const shapes = {
        tiny: (i) => "{ a" + i + ": __typename }",
        inlined: (i) => 'mutation { issueToken(userId: "8:acs:5c6fe286-6348-4310-9cd1-6980234eb6c2_' + i + '", scopes: [VOIP, CHAT], expiresInMinutes: 60) { token expiresOn } }',
        wide: (i) => "query Q" + i + " { " + Array.from({ length: 40 }, (_, k) => "f" + k + ": me { subject communicationUser { id } }").join(" ") + " }",
      };
      // Enough documents that the few bytes of other allocations are noise in the average:
      // 2000 of the small ones, 400 of the wide one (130 KB each; 2000 took seconds to parse).
      const count = { tiny: 2000, inlined: 2000, wide: 400 };
      const out = {};
      for (const [name, make] of Object.entries(shapes)) {
        const n = count[name];
        gc(); gc();
        const before = process.memoryUsage().heapUsed;
        const keep = [];
        let estimate = 0;
        for (let i = 0; i < n; i++) { const d = parse(make(i)); estimate += estimateDocumentBytes(d); keep.push(d); }
        gc(); gc();
        out[name] = { real: (process.memoryUsage().heapUsed - before) / n, estimate: estimate / n, kept: keep.length };
      }
      console.log(JSON.stringify(out));
    `;
    const compiled = await compileScript({
      name: "document-heap",
      source: script,
      resolveDir: fileURLToPath(new URL(".", import.meta.url)),
    });
    const { stdout } = await promisify(execFile)(process.execPath, ["--expose-gc", compiled], {
      cwd: fileURLToPath(new URL("../..", import.meta.url)),
    });
    const shapes = JSON.parse(stdout) as Record<string, { real: number; estimate: number }>;
    for (const [name, { real, estimate }] of Object.entries(shapes)) {
      expect(real, name).toBeGreaterThan(1000);
      expect(estimate, name).toBeGreaterThanOrEqual(real);
    }
  });
});
