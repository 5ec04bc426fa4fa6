import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { FastifyPluginAsync, FastifyReply } from "fastify";
import type { Config } from "../config.js";
import {
  createSandboxPage,
  EXAMPLE_VARIABLES,
  requiredHeaderPlaceholders,
  SANDBOX_EXAMPLE_OPERATION,
} from "./landing-page.js";

/**
 * The development explorer: GraphiQL, served with React from the gateway's own node_modules, so
 * the page works with no internet (a plane, CI) where Apollo Sandbox, loaded from Apollo's CDN,
 * stays white. Sandbox stays at /sandbox for those who have internet. Production serves neither.
 */

const JS = "text/javascript; charset=utf-8";
const CSS = "text/css; charset=utf-8";

/** Where the page's files are served from: the page's own origin, nothing from a CDN. */
export const EXPLORER_ASSET_PREFIX = "/explorer/";

/**
 * The installed files the page loads. GraphiQL 4's UMD bundle needs the globals React and ReactDOM;
 * the packages' `exports` maps hide these files, so they are found beside each package.json.
 */
export const EXPLORER_PACKAGE_FILES = [
  { name: "react.js", pkg: "react", file: "umd/react.production.min.js", type: JS },
  { name: "react-dom.js", pkg: "react-dom", file: "umd/react-dom.production.min.js", type: JS },
  { name: "graphiql.js", pkg: "graphiql", file: "graphiql.min.js", type: JS },
  { name: "graphiql.css", pkg: "graphiql", file: "graphiql.min.css", type: CSS },
] as const;

/**
 * Starts GraphiQL with the state the page carries. A file of its own, not an inline script, so the
 * page's Content-Security-Policy can allow scripts from the gateway only.
 */
const BOOTSTRAP_JS = `// The gateway's GraphiQL explorer (src/server/explorer.ts).
(function () {
  "use strict";
  var state = JSON.parse(document.getElementById("explorer-state").textContent);
  var props = {
    fetcher: GraphiQL.createFetcher({ url: new URL(state.endpoint, window.location.href).href }),
    query: state.query,
    variables: state.variables,
    defaultEditorToolsVisibility: state.editorTools,
  };
  if (state.headers !== undefined) {
    props.headers = state.headers;
    // New tabs need the same headers to get anywhere.
    props.defaultHeaders = state.headers;
  }
  var target = document.getElementById("graphiql");
  target.textContent = "";
  ReactDOM.createRoot(target).render(React.createElement(GraphiQL, props));
})();
`;

/** The page's own layout: a one-line bar (with the link to Sandbox) above GraphiQL. */
const PAGE_CSS = `html, body { height: 100%; margin: 0; }
body { display: flex; flex-direction: column; }
.explorer-bar {
  display: flex; align-items: center; justify-content: space-between; gap: 1rem;
  padding: 0.375rem 1rem; font: 0.875rem/1.4 system-ui, sans-serif;
  background: #f6f8fa; color: #1f2328; border-bottom: 1px solid #d0d7de;
}
.explorer-bar a { color: #0969da; }
#graphiql { flex: 1; min-height: 0; }
#graphiql > .graphiql-container { height: 100%; }
body.graphiql-dark .explorer-bar { background: #161b22; color: #e6edf3; border-color: #30363d; }
body.graphiql-dark .explorer-bar a { color: #4493f8; }
@media (prefers-color-scheme: dark) {
  body:not(.graphiql-light) .explorer-bar { background: #161b22; color: #e6edf3; border-color: #30363d; }
  body:not(.graphiql-light) .explorer-bar a { color: #4493f8; }
}
`;

/**
 * Scripts, styles and requests: the gateway only. No inline script and no eval (the start-up is
 * explorer.js). 'unsafe-inline' for styles only: GraphiQL's dialogs (Radix) add <style> elements
 * when they open, which 'self' refuses. data: for fonts and images: graphiql.css embeds its own.
 */
export const EXPLORER_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "font-src data:",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

export interface ExplorerAsset {
  readonly body: Buffer;
  readonly contentType: string;
  /** A digest of the body: the URL's `v`, so a cached copy can be kept for good. */
  readonly version: string;
}

export type ExplorerFiles =
  | { readonly installed: true; readonly assets: ReadonlyMap<string, ExplorerAsset> }
  | { readonly installed: false; readonly reason: string };

const require = createRequire(import.meta.url);

/** A package's directory, found from where the gateway runs. Throws when it is not installed. */
export type ResolvePackageDir = (pkg: string) => string;
const resolvePackageDir: ResolvePackageDir = (pkg) =>
  dirname(require.resolve(`${pkg}/package.json`));

function asset(body: Buffer | string, contentType: string): ExplorerAsset {
  const bytes = typeof body === "string" ? Buffer.from(body) : body;
  const version = createHash("sha256").update(bytes).digest("hex").slice(0, 16);
  return { body: bytes, contentType, version };
}

/**
 * Reads the explorer's files once, at start. graphiql, react and react-dom are devDependencies:
 * an install with --omit=dev has none of them (the Dockerfile copies just these files into the
 * image), and a development start must still work without them (the pages then say how to
 * install them).
 */
export function loadExplorerFiles(
  resolveDir: ResolvePackageDir = resolvePackageDir,
): ExplorerFiles {
  const assets = new Map<string, ExplorerAsset>();
  try {
    for (const { name, pkg, file, type } of EXPLORER_PACKAGE_FILES) {
      assets.set(name, asset(readFileSync(join(resolveDir(pkg), file)), type));
    }
  } catch (error) {
    return { installed: false, reason: error instanceof Error ? error.message : String(error) };
  }
  assets.set("explorer.js", asset(BOOTSTRAP_JS, JS));
  assets.set("explorer.css", asset(PAGE_CSS, CSS));
  return { installed: true, assets };
}

/** The installed files, read once per process (tests start many gateways). */
let installed: ExplorerFiles | undefined;

/** JSON inside a `<script>` element: nothing in it may close the element or start markup. */
function jsonForScriptElement(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** What GraphiQL opens with: the example operation, its variables, the headers to fill in. */
export interface ExplorerState {
  endpoint: string;
  query: string;
  variables: string;
  headers?: string;
  editorTools: "headers" | "variables";
}

export function explorerState(config: Readonly<Config>): ExplorerState {
  const headers = requiredHeaderPlaceholders(config);
  const needsHeaders = Object.keys(headers).length > 0;
  return {
    endpoint: "/graphql",
    query: SANDBOX_EXAMPLE_OPERATION,
    variables: JSON.stringify(EXAMPLE_VARIABLES, null, 2),
    ...(needsHeaders ? { headers: JSON.stringify(headers, null, 2) } : {}),
    // Open on what the developer must edit before the first run succeeds.
    editorTools: needsHeaders ? "headers" : "variables",
  };
}

function renderExplorerPage(
  config: Readonly<Config>,
  assets: ReadonlyMap<string, ExplorerAsset>,
): string {
  const url = (name: string) => `${EXPLORER_ASSET_PREFIX}${name}?v=${assets.get(name)!.version}`;
  const script = (name: string) => `    <script defer src="${url(name)}"></script>`;
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>ACS Identity Gateway · GraphiQL explorer</title>
    <link rel="stylesheet" href="${url("graphiql.css")}" />
    <link rel="stylesheet" href="${url("explorer.css")}" />
    <script id="explorer-state" type="application/json">${jsonForScriptElement(explorerState(config))}</script>
${["react.js", "react-dom.js", "graphiql.js", "explorer.js"].map(script).join("\n")}
  </head>
  <body>
    <header class="explorer-bar">
      <span><strong>ACS Identity Gateway</strong> · GraphiQL explorer, served by the gateway (works offline)</span>
      <a href="/sandbox">Apollo Sandbox (needs internet)</a>
    </header>
    <main id="graphiql">Loading the explorer…</main>
    <noscript>The explorer needs JavaScript.</noscript>
  </body>
</html>
`;
}

/** The answer in place of the explorer when its packages are missing: what happened, what to do. */
export function notInstalledMessage(reason: string): string {
  return `The GraphiQL explorer's files are not installed: graphiql, react and react-dom are devDependencies, and this install left them out (${reason}).
Fix: run \`npm install\` (without --omit=dev) and restart the gateway.
GraphQL itself works: POST operations to /graphql. Apollo Sandbox, which needs internet, is at /sandbox.
`;
}

export interface Explorer {
  readonly files: ExplorerFiles;
  /** Answers a browser's page request (GET /, GET /graphql) with the explorer or the install hint. */
  sendPage(reply: FastifyReply): FastifyReply;
  /** GET /, GET /sandbox and GET /explorer/:name. */
  routes: FastifyPluginAsync;
}

/** Development only: production serves no explorer and no Sandbox (http-server.ts). */
export async function createExplorer(
  config: Readonly<Config>,
  files: ExplorerFiles = (installed ??= loadExplorerFiles()),
): Promise<Explorer> {
  const renderSandbox = await createSandboxPage(config);
  const page = files.installed ? renderExplorerPage(config, files.assets) : undefined;

  function sendPage(reply: FastifyReply): FastifyReply {
    if (!files.installed) {
      return reply
        .code(503)
        .header("cache-control", "no-store")
        .type("text/plain; charset=utf-8")
        .send(notInstalledMessage(files.reason));
    }
    return (
      reply
        .code(200)
        // The page is rendered from this process's configuration: never from a cache.
        .header("cache-control", "no-store")
        .header("content-security-policy", EXPLORER_CSP)
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .type("text/html; charset=utf-8")
        .send(page)
    );
  }

  const routes: FastifyPluginAsync = async (fastify) => {
    fastify.get("/", async (_request, reply) => sendPage(reply));

    fastify.get("/sandbox", async (_request, reply) =>
      reply
        .header("cache-control", "no-store")
        .type("text/html; charset=utf-8")
        .send(await renderSandbox()),
    );

    fastify.get<{ Params: { name: string }; Querystring: { v?: string } }>(
      `${EXPLORER_ASSET_PREFIX}:name`,
      async (request, reply) => {
        if (!files.installed) {
          return sendPage(reply);
        }
        const file = files.assets.get(request.params.name);
        if (file === undefined) {
          return reply.code(404).type("text/plain; charset=utf-8").send("Not found\n");
        }
        const etag = `"${file.version}"`;
        reply
          .header("etag", etag)
          .header("x-content-type-options", "nosniff")
          // The page names each file with its digest: that URL's content never changes. Any other
          // URL is checked again each time (the ETag makes that a 304).
          .header(
            "cache-control",
            request.query.v === file.version ? "public, max-age=31536000, immutable" : "no-cache",
          );
        if (request.headers["if-none-match"] === etag) {
          return reply.code(304).send();
        }
        return reply.type(file.contentType).send(file.body);
      },
    );
  };

  return { files, sendPage, routes };
}
