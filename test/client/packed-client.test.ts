import { execFile } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { directoryDataDir } from "../helpers/directory-folder.js";
import {
  packIntoApp,
  spawnGateway,
  type GatewayProcess,
  type PackedTarball,
} from "../helpers/processes.js";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../..", import.meta.url));

/** What a frontend app writes: the ACS SDK's credential fed by the client's tokenRefresher. */
const APP_SOURCE = `
import { AzureCommunicationTokenCredential } from "@azure/communication-common";
import { createTokenRefresher, isGatewayClientError } from "@acs-identity-gateway/client";

const credential = new AzureCommunicationTokenCredential({
  tokenRefresher: createTokenRefresher({ url: GATEWAY_URL, scopes: ["voip", "chat.join"] }),
  refreshProactively: true,
});
try {
  const { token, expiresOnTimestamp } = await credential.getToken();
  report({ segments: token.split(".").length, expiresOnTimestamp });
} catch (error) {
  report({ code: isGatewayClientError(error) ? error.code : String(error) });
} finally {
  credential.dispose();
}
`;

const NODE_APP = `const GATEWAY_URL = process.env.GATEWAY_URL;
const report = (result) => console.log(JSON.stringify(result));
${APP_SOURCE}`;

/** The same app in TypeScript, with the mistakes the client's types must catch. */
const TYPED_APP = `declare const GATEWAY_URL: string;
declare function report(result: object): void;
${APP_SOURCE}
// Both spellings are accepted, and a scope that does not exist is a type error.
createTokenRefresher({ url: GATEWAY_URL, scopes: ["VOIP", "chat", "voip.join"] });
// @ts-expect-error "video" is not an ACS scope
createTokenRefresher({ url: GATEWAY_URL, scopes: ["video"] });
// @ts-expect-error expiresInMinutes is a number
createTokenRefresher({ url: GATEWAY_URL, scopes: ["voip"], expiresInMinutes: "60" });
`;

/**
 * The client as a frontend team gets it: `npm pack -w @acs-identity-gateway/client` (its prepack
 * builds it), installed from the tarball into an app in a temporary folder outside the repository,
 * with the ACS SDK's `@azure/communication-common` beside it and nothing of the gateway.
 */
describe("the packed client, installed into an app outside the repository", () => {
  let app: string;
  let packed: PackedTarball;
  let gateway: GatewayProcess | undefined;
  let directory: { dir: string; remove(): void } | undefined;

  beforeAll(async () => {
    app = mkdtempSync(join(tmpdir(), "acs-client-app-"));
    // Not the repository's .data/directory, which other test processes may open too; the
    // token request reaches the directory, and a folder of its own opens faster than `memory`.
    directory = await directoryDataDir();
    // The gateway starts while npm packs and installs: neither needs the other.
    const starting = spawnGateway("npm", ["start"], {
      cwd: root,
      env: {
        PORT: "0",
        NODE_ENV: "development",
        LOG_LEVEL: "info",
        DIRECTORY_DATA_DIR: directory.dir,
      },
    });
    starting.then((started) => (gateway = started)).catch(() => {});
    [{ packed }] = await Promise.all([
      packIntoApp(root, "@acs-identity-gateway/client", {
        dir: app,
        manifest: { name: "frontend-app", private: true, type: "module" },
        extra: ["@azure/communication-common@2.4.2", "@types/node@20.19.43"],
      }),
      starting,
    ]);
  }, 240_000);

  afterAll(async () => {
    if (gateway && gateway.child.exitCode === null) {
      gateway.child.kill("SIGTERM");
      await gateway.exited;
    }
    if (app) {
      rmSync(app, { recursive: true, force: true });
    }
    directory?.remove();
  });

  it("holds the built files, their types, the manifest and a README, and nothing of the server", () => {
    const paths = packed.files.map((file) => file.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        "package.json",
        "README.md",
        "LICENSE",
        "persisted-documents.json",
        "dist/index.js",
        "dist/index.d.ts",
        "dist/token-refresher.js",
        "dist/scopes.d.ts",
        "dist/generated/graphql.js",
        "dist/documents.js",
        "dist/documents.d.ts",
        "documents/package.json",
      ]),
    );
    expect(paths.filter((path) => /^(test|node_modules)\//.test(path))).toEqual([]);
    const manifest = JSON.parse(
      readFileSync(join(app, "node_modules/@acs-identity-gateway/client/package.json"), "utf8"),
    );
    expect(manifest.private).toBeUndefined();
    // Nothing is installed with it: graphql (for the /documents subpath) is an optional peer.
    expect(manifest.dependencies).toBeUndefined();
    expect(existsSync(join(app, "node_modules/graphql"))).toBe(false);
    // A real copy in the app, not a link back into this repository.
    expect(lstatSync(join(app, "node_modules/@acs-identity-gateway/client")).isSymbolicLink()).toBe(
      false,
    );
    console.log(
      `client tarball: ${packed.files.length} files, ${packed.size} bytes packed, ${packed.unpackedSize} unpacked`,
    );
  });

  it("feeds AzureCommunicationTokenCredential a live token from `npm start`", async () => {
    writeFileSync(join(app, "app.mjs"), NODE_APP);
    const { stdout } = await run(process.execPath, ["app.mjs"], {
      cwd: app,
      env: { PATH: process.env.PATH, GATEWAY_URL: gateway!.url },
    });
    const result = JSON.parse(stdout.trim());
    expect(result).toEqual({ segments: 3, expiresOnTimestamp: expect.any(Number) });
    // ACS's default lifetime (24 h), far beyond the SDK's 10-minute refresh margin.
    expect(result.expiresOnTimestamp).toBeGreaterThan(Date.now() + 60 * 60_000);
  });

  /**
   * `tsc` over `file` in the app, strict, nodenext, every declaration file checked too.
   * Incremental: the second check finds the first's verdicts on the declaration files both read
   * (@types/node, the ACS SDK, the client) in the build info, and checks only what changed.
   */
  async function typeCheck(
    file: string,
    source: string,
    options: Record<string, unknown> = {},
  ): Promise<string> {
    writeFileSync(join(app, file), source);
    // The default options share one build info (see above); other options get their own.
    const own = Object.keys(options).length > 0;
    const config = own ? `tsconfig.${file}.json` : "tsconfig.json";
    writeFileSync(
      join(app, config),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: "nodenext",
          moduleResolution: "nodenext",
          target: "es2022",
          types: ["node"],
          noEmit: true,
          skipLibCheck: false,
          incremental: true,
          tsBuildInfoFile: own ? `${file}.tsbuildinfo` : "typecheck.tsbuildinfo",
          ...options,
        },
        files: [file],
      }),
    );
    const tsc = join(root, "node_modules/typescript/bin/tsc");
    return run(process.execPath, [tsc, "-p", config], { cwd: app }).then(
      () => "",
      (error: { stdout: string }) => error.stdout,
    );
  }

  it("type-checks in a strict nodenext app, and its types refuse a scope that does not exist", async () => {
    // No graphql in the app: the main entry must not need it.
    expect(await typeCheck("app.ts", TYPED_APP)).toBe("");
  });

  it("loads with require() from CommonJS, and type-checks under the older `node` resolution", async () => {
    // A CommonJS program on Node 20.19+ (require() of an ES module) and TypeScript's node10
    // resolution use the `default` condition and the top-level `main` and `types`, not `import`.
    writeFileSync(
      join(app, "app.cjs"),
      `const { createTokenRefresher, isGatewayClientError } = require("@acs-identity-gateway/client");
console.log(typeof createTokenRefresher, typeof isGatewayClientError);`,
    );
    const { stdout } = await run(process.execPath, ["--no-warnings", "app.cjs"], { cwd: app });
    expect(stdout.trim()).toBe("function function");
    const legacy = `import { createTokenRefresher, type TokenRefresher } from "@acs-identity-gateway/client";
const refresher: TokenRefresher = createTokenRefresher({ url: "http://g/graphql", scopes: ["voip"] });
console.log(refresher);
`;
    expect(
      await typeCheck("legacy.ts", legacy, { module: "esnext", moduleResolution: "node" }),
    ).toBe("");
  });

  it("gives GraphQL clients typed documents from /documents, with graphql as an optional peer", async () => {
    await run(
      "npm",
      [
        "install",
        "graphql@16.12.0",
        "@graphql-typed-document-node/core@3.2.0",
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
      ],
      { cwd: app },
    );
    const source = `import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import type { IssueMyTokenMutation, IssueMyTokenMutationVariables } from "@acs-identity-gateway/client";
import { IssueMyTokenDocument } from "@acs-identity-gateway/client/documents";

const typed: TypedDocumentNode<IssueMyTokenMutation, IssueMyTokenMutationVariables> =
  IssueMyTokenDocument;
// @ts-expect-error the variables of another operation
const wrong: TypedDocumentNode<IssueMyTokenMutation, { userId: string }> = IssueMyTokenDocument;
console.log(typed.kind, wrong);
`;
    expect(await typeCheck("documents.ts", source)).toBe("");

    // A resolver that does not read `exports` (React Native's Metro without package exports,
    // webpack 4, a jest-resolve before 28) looks the subpath up as a folder, through its
    // package.json, as Node's CommonJS resolution of a folder path does: the module the exports
    // map gives, and its types beside it.
    const folder = "./node_modules/@acs-identity-gateway/client/documents";
    const byFolder = `import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
const byFolder = createRequire(import.meta.url).resolve(${JSON.stringify(folder)});
const byExports = fileURLToPath(import.meta.resolve("@acs-identity-gateway/client/documents"));
console.log(byFolder === byExports, byFolder.endsWith("/dist/documents.js"));`;
    writeFileSync(join(app, "by-folder.mjs"), byFolder);
    const { stdout } = await run(process.execPath, ["by-folder.mjs"], { cwd: app });
    expect(stdout.trim()).toBe("true true");
    const stub = JSON.parse(readFileSync(join(app, folder, "package.json"), "utf8"));
    expect(stub.module).toBe(stub.main);
    expect(existsSync(join(app, folder, stub.types))).toBe(true);
  });

  it("bundles for the browser with the ACS SDK's credential in under 400 kB", async () => {
    writeFileSync(
      join(app, "browser.js"),
      `const GATEWAY_URL = "/graphql";\nconst report = (result) => console.log(result);\n${APP_SOURCE}`,
    );
    const result = await build({
      absWorkingDir: app,
      entryPoints: ["browser.js"],
      bundle: true,
      platform: "browser",
      format: "esm",
      minify: true,
      write: false,
      logLevel: "silent",
      metafile: true,
    });
    const bytes = result.outputFiles[0]!.contents.byteLength;
    console.log(`browser bundle (client + @azure/communication-common): ${bytes} bytes`);
    expect(bytes).toBeLessThan(400_000);
    // The client's code is in it, and no Node built-in was needed to get there.
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((input) => input.includes("@acs-identity-gateway/client/dist/"))).toBe(true);
    expect(inputs.filter((input) => input.startsWith("node:"))).toEqual([]);
  });
});
