import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { startGateway } from "../helpers/gateway.js";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../..", import.meta.url));

/**
 * The package as a user gets it: `npm run build:client` output, imported by its public name
 * (`acs-identity-gateway/client`, a package self-reference through `exports`) from a plain Node
 * process, with nothing but the built files and fetch.
 */
describe("the published client entry point", () => {
  let app: App;
  let url: string;
  beforeAll(async () => {
    await run(
      process.execPath,
      [`${root}node_modules/typescript/bin/tsc`, "-p", "tsconfig.client.json"],
      {
        cwd: root,
      },
    );
    app = await startGateway();
    url = await app.listen(0);
  }, 120_000);
  afterAll(async () => {
    await app?.close();
  });

  it("declares ./client with types and an ESM import, and the build produced both", () => {
    const pkg = JSON.parse(readFileSync(`${root}package.json`, "utf8"));
    const entry = pkg.exports["./client"];
    expect(entry).toEqual({ types: "./dist/client/index.d.ts", import: "./dist/client/index.js" });
    expect(existsSync(`${root}${entry.types}`)).toBe(true);
    expect(existsSync(`${root}${entry.import}`)).toBe(true);
    const types = readFileSync(`${root}dist/client/generated/graphql.d.ts`, "utf8");
    // DateTime is a string for the client, not `unknown`.
    expect(types).toMatch(/expiresOn: string;/);
  });

  it("imports by package name in Node and fetches a token from a running gateway", async () => {
    const script = `
      const client = await import("acs-identity-gateway/client");
      const refresher = client.createTokenRefresher({ url: process.env.GATEWAY_URL, scopes: ["VOIP"] });
      const token = await refresher();
      console.log(JSON.stringify({
        exports: Object.keys(client).sort(),
        segments: token.split(".").length,
        hasIssueMyTokenDocument: client.IssueMyTokenDocument.kind === "Document",
      }));
    `;
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
      cwd: root,
      env: { ...process.env, GATEWAY_URL: url },
    });
    const result = JSON.parse(stdout.trim());
    expect(result.segments).toBe(3);
    expect(result.hasIssueMyTokenDocument).toBe(true);
    expect(result.exports).toEqual(
      expect.arrayContaining([
        "createTokenRefresher",
        "createGatewayClient",
        "GatewayClientError",
        "persistedOperations",
        "IssueMyTokenDocument",
        "IssueTokenDocument",
        "MeDocument",
      ]),
    );
  });
});
