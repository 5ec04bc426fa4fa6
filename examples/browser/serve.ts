/**
 * Serves the example page by hand, as test/browser/example-page.test.ts serves it to Chromium:
 * main.ts bundled with esbuild (the client package from its sources, through tsconfig.json's
 * `paths`) and index.html, from an origin of its own on loopback. A development gateway accepts
 * any http://localhost:* / http://127.0.0.1:* page (CORS_ORIGINS unset), so nothing else is needed.
 *
 *   npx tsx examples/browser/serve.ts [--port 5173] [--gateway http://localhost:4000/graphql]
 *
 * It prints the page's URL; Ctrl-C stops it. The bundle is built once at start: restart it after
 * changing main.ts or the client package.
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build } from "esbuild";

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "5173" },
    gateway: { type: "string", default: "http://localhost:4000/graphql" },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`--port must be a whole number from 0 to 65535, not ${values.port}\n`);
  process.exit(1);
}

const bundled = await build({
  entryPoints: [here("./main.ts")],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  write: false,
  logLevel: "warning",
});
const bundle = bundled.outputFiles[0]!.text;
const html = readFileSync(here("./index.html"), "utf8");

const server = createServer((request, response) => {
  const path = new URL(request.url ?? "/", "http://x").pathname;
  if (path === "/bundle.js") {
    response.writeHead(200, { "content-type": "text/javascript" }).end(bundle);
  } else if (path === "/") {
    response.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
  } else {
    response.writeHead(404).end();
  }
});

server.listen(port, "127.0.0.1", () => {
  const address = server.address();
  const actual = typeof address === "object" && address ? address.port : port;
  const url = `http://127.0.0.1:${actual}/?gateway=${encodeURIComponent(values.gateway)}`;
  process.stdout.write(`The example page: ${url}\n`);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
