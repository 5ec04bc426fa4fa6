import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import Fastify from "fastify";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import {
  createExplorer,
  EXPLORER_CSP,
  loadExplorerFiles,
  type ExplorerState,
} from "../../src/server/explorer.js";
import {
  PRODUCTION_GET_MESSAGE,
  SANDBOX_EXAMPLE_OPERATION,
} from "../../src/server/landing-page.js";
import {
  hasChromium,
  launchChromium,
  withoutChromium,
  type HeadlessChromium,
} from "../helpers/browser.js";
import { PRODUCTION_SETTINGS, startGateway } from "../helpers/gateway.js";

const ORIGIN = "http://gateway.test";
const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/;

/** What the callbacks run in Chromium use of the page (tsconfig has no DOM lib). */
interface CodeMirrorElement {
  /** CodeMirror 5 keeps its editor on its wrapper element. */
  CodeMirror?: { getValue(): string };
}
declare const document: {
  querySelector(selector: string): CodeMirrorElement | null;
  addEventListener(
    type: "securitypolicyviolation",
    listener: (event: { violatedDirective: string; blockedURI: string }) => void,
  ): void;
};

const getPage = (app: App, url: string, accept = "text/html,application/xhtml+xml") =>
  app.server.fastify.inject({ method: "GET", url, headers: { accept } });

/** Every src and href of a page, as written. */
const references = (html: string) =>
  [...html.matchAll(/\b(?:src|href)\s*=\s*["']?([^"'\s>]+)/gi)].map((match) => match[1]!);

/** The explorer's initial state, from its JSON script element. */
function stateOf(html: string): ExplorerState {
  const json = /<script id="explorer-state" type="application\/json">([^<]*)<\/script>/.exec(
    html,
  )?.[1];
  expect(json, "the page's state element").toBeDefined();
  return JSON.parse(json!) as ExplorerState;
}

const packageFile = (pkg: string, file: string) =>
  readFileSync(join(dirname(createRequire(import.meta.url).resolve(`${pkg}/package.json`)), file));

describe("the explorer in development (in process)", () => {
  let app: App;
  beforeAll(async () => {
    app = await startGateway({ NODE_ENV: "development" });
  });
  afterAll(async () => {
    await app?.close();
  });

  it("serves GraphiQL at / and to a browser opening /graphql, every file from the same origin", async () => {
    const root = await getPage(app, "/");
    expect(root.statusCode).toBe(200);
    expect(root.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(root.headers["content-security-policy"]).toBe(EXPLORER_CSP);
    expect(root.headers["cache-control"]).toBe("no-store");
    const refs = references(root.body);
    expect(refs.filter((ref) => ref.startsWith("/explorer/"))).toHaveLength(6);
    for (const ref of refs) {
      expect(new URL(ref, `${ORIGIN}/`).origin, ref).toBe(ORIGIN);
    }
    expect(root.body).not.toMatch(/\bhttps?:|\/\/[a-z]/i);
    expect(root.body).toContain('<a href="/sandbox">Apollo Sandbox (needs internet)</a>');

    const graphql = await getPage(app, "/graphql");
    expect(graphql.statusCode).toBe(200);
    expect(graphql.headers["content-security-policy"]).toBe(EXPLORER_CSP);
    expect(graphql.body).toBe(root.body);
  });

  it("opens on the example operation with its variables, and no headers when none are required", async () => {
    const state = stateOf((await getPage(app, "/")).body);
    expect(state).toEqual({
      endpoint: "/graphql",
      query: SANDBOX_EXAMPLE_OPERATION,
      variables: JSON.stringify({ scopes: ["VOIP"] }, null, 2),
      editorTools: "variables",
    });
    expect(state.query).toContain("mutation IssueMyToken(");
    expect(state.query).toContain("# Press Ctrl+Enter (or the Run button)");
  });

  it("leaves GraphQL GETs and POSTs to Apollo: CSRF prevention still refuses a simple GET", async () => {
    const get = await getPage(app, `/graphql?query=${encodeURIComponent("{ me { subject } }")}`);
    expect(get.statusCode).toBe(400);
    expect(get.body).toContain("CSRF");
    const post = await app.server.fastify.inject({
      method: "POST",
      url: "/graphql",
      headers: { "content-type": "application/json", accept: "application/json" },
      payload: JSON.stringify({ query: "{ me { subject } }" }),
    });
    expect(post.json()).toEqual({ data: { me: { subject: "anonymous" } } });
  });

  it("serves the page's scripts and styles with their content types and a cache header", async () => {
    const page = (await getPage(app, "/")).body;
    const expected: Record<string, { type: string; body?: Buffer }> = {
      "react.js": {
        type: "text/javascript; charset=utf-8",
        body: packageFile("react", "umd/react.production.min.js"),
      },
      "react-dom.js": {
        type: "text/javascript; charset=utf-8",
        body: packageFile("react-dom", "umd/react-dom.production.min.js"),
      },
      "graphiql.js": {
        type: "text/javascript; charset=utf-8",
        body: packageFile("graphiql", "graphiql.min.js"),
      },
      "graphiql.css": {
        type: "text/css; charset=utf-8",
        body: packageFile("graphiql", "graphiql.min.css"),
      },
      "explorer.js": { type: "text/javascript; charset=utf-8" },
      "explorer.css": { type: "text/css; charset=utf-8" },
    };
    for (const ref of references(page).filter((r) => r.startsWith("/explorer/"))) {
      const name = new URL(ref, ORIGIN).pathname.slice("/explorer/".length);
      const response = await app.server.fastify.inject({ method: "GET", url: ref });
      expect(response.statusCode, ref).toBe(200);
      expect(response.headers["content-type"], ref).toBe(expected[name]!.type);
      expect(response.headers["cache-control"], ref).toBe("public, max-age=31536000, immutable");
      expect(response.headers["x-content-type-options"], ref).toBe("nosniff");
      if (expected[name]!.body) {
        expect(response.rawPayload.equals(expected[name]!.body!), ref).toBe(true);
      }
    }

    // Without the page's version: checked again each time, cheaply.
    const unversioned = await app.server.fastify.inject({
      method: "GET",
      url: "/explorer/react.js",
    });
    expect(unversioned.headers["cache-control"]).toBe("no-cache");
    const again = await app.server.fastify.inject({
      method: "GET",
      url: "/explorer/react.js",
      headers: { "if-none-match": String(unversioned.headers.etag) },
    });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe("");
    const unknown = await app.server.fastify.inject({ method: "GET", url: "/explorer/nope.js" });
    expect(unknown.statusCode).toBe(404);
  });

  it("keeps Apollo Sandbox at /sandbox, aimed at /graphql", async () => {
    const sandbox = await getPage(app, "/sandbox");
    expect(sandbox.statusCode).toBe(200);
    expect(sandbox.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(sandbox.body).toContain("embeddable-sandbox");
    expect(sandbox.body).toContain("issueMyToken");
    expect(sandbox.body).toContain('new URL("/graphql", window.location.href).href');
    expect(sandbox.body).not.toContain("initialEndpoint = window.location.href");
  });
});

describe("the explorer's header placeholders", () => {
  it("names the required headers with placeholders, never the configured secret", async () => {
    const secret = "router-secret-value-0123456789";
    const app = await startGateway({
      AUTH_MODE: "jwt",
      AUTH_JWKS_URL: "http://127.0.0.1:1/keys",
      AUTH_ISSUER: "https://issuer.test/",
      AUTH_AUDIENCE: "api://acs-gateway",
      ROUTER_SECRET: secret,
    });
    try {
      const page = await getPage(app, "/");
      expect(page.body).not.toContain(secret);
      const state = stateOf(page.body);
      expect(JSON.parse(state.headers!)).toEqual({
        Authorization: "Bearer <a JWT from https://issuer.test/ for audience api://acs-gateway>",
        "router-authorization": "<the gateway's ROUTER_SECRET>",
      });
      expect(state.editorTools).toBe("headers");
      // The placeholders' angle brackets cannot open markup in the page.
      expect(page.body).toContain("Bearer \\u003ca JWT from https://issuer.test/");
      expect(page.body).not.toContain("<a JWT");

      const sandbox = await getPage(app, "/sandbox");
      expect(sandbox.body).toContain("router-authorization");
      expect(sandbox.body).not.toContain(secret);
    } finally {
      await app.close();
    }
  });
});

describe("production", () => {
  let app: App;
  beforeAll(async () => {
    app = await startGateway(PRODUCTION_SETTINGS);
  });
  afterAll(async () => {
    await app?.close();
  });

  it("serves no explorer and no Sandbox: / and their paths are 404s", async () => {
    for (const url of ["/", "/sandbox", "/explorer/graphiql.js", "/explorer/explorer.js"]) {
      const response = await getPage(app, url);
      expect(response.statusCode, url).toBe(404);
      expect(response.body, url).toContain(`"message":"Route GET:${url} not found"`);
    }
  });

  it("answers a browser opening /graphql with the one-sentence message", async () => {
    const response = await getPage(app, "/graphql");
    expect(response.statusCode).toBe(200);
    expect(response.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect(response.body).toBe(PRODUCTION_GET_MESSAGE);
  });
});

describe("a development install without the explorer's packages (npm install --omit=dev)", () => {
  it("still serves, and / says the files are not installed and how to fix it", async () => {
    const files = loadExplorerFiles((pkg) => {
      throw new Error(`Cannot find module '${pkg}/package.json'`);
    });
    expect(files.installed).toBe(false);
    const explorer = await createExplorer(loadConfig({ LOG_LEVEL: "silent" }), files);
    const fastify = Fastify();
    await fastify.register(explorer.routes);
    try {
      const root = await fastify.inject({ method: "GET", url: "/" });
      expect(root.statusCode).toBe(503);
      expect(root.headers["content-type"]).toBe("text/plain; charset=utf-8");
      expect(root.body).toContain("GraphiQL explorer's files are not installed");
      expect(root.body).toContain("Cannot find module 'react/package.json'");
      expect(root.body).toContain("run `npm install` (without --omit=dev)");
      expect((await fastify.inject({ method: "GET", url: "/explorer/graphiql.js" })).body).toBe(
        root.body,
      );
      // Sandbox does not need them.
      expect((await fastify.inject({ method: "GET", url: "/sandbox" })).statusCode).toBe(200);
    } finally {
      await fastify.close();
    }
  });

  it("treats a package without its UMD files as not installed", () => {
    const empty = mkdtempSync(join(tmpdir(), "acsgw-no-graphiql-"));
    try {
      const files = loadExplorerFiles(() => empty);
      expect(files.installed).toBe(false);
      expect(!files.installed && files.reason).toMatch(/ENOENT/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!hasChromium)(
  `the explorer in Chromium, with no internet${withoutChromium}`,
  () => {
    let app: App;
    let origin: string;
    let context: BrowserContext;
    let page: Page;
    let browser: HeadlessChromium | undefined;
    /** Every request the page tried to send off this machine (all of them aborted). */
    const offMachine: string[] = [];
    const pageErrors: string[] = [];

    beforeAll(async () => {
      app = await startGateway({ NODE_ENV: "development" });
      origin = new URL(await app.listen(0)).origin;
      browser = await launchChromium({ width: 1280, height: 800 });
      ({ context } = browser);
      // As on a plane: anything not on this machine fails, and is recorded.
      await context.route("**/*", async (route) => {
        const url = new URL(route.request().url());
        const loopback = ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname);
        if (loopback || url.protocol === "data:" || url.protocol === "blob:") {
          await route.continue();
        } else {
          offMachine.push(url.href);
          await route.abort("internetdisconnected");
        }
      });
      // The page's CSP violations, which would not all surface as page errors.
      await context.addInitScript(() => {
        const violations: string[] = [];
        (globalThis as unknown as { cspViolations: string[] }).cspViolations = violations;
        document.addEventListener("securitypolicyviolation", (event) => {
          violations.push(`${event.violatedDirective} ${event.blockedURI}`);
        });
      });
      page = context.pages()[0] ?? (await context.newPage());
      page.on("pageerror", (error) => pageErrors.push(error.message));
    }, 120_000);

    afterAll(async () => {
      await browser?.close();
      await app?.close();
    });

    it("opens on the example, runs it with Ctrl+Enter and shows the token, all from the gateway", async () => {
      const requested: string[] = [];
      page.on("request", (request) => requested.push(request.url()));
      await page.goto(`${origin}/`);

      const editorText = (selector: string) =>
        page.evaluate(
          (css) => document.querySelector(css)?.CodeMirror?.getValue() ?? null,
          selector,
        );
      await page.waitForFunction(
        (query) =>
          document.querySelector(".graphiql-query-editor .CodeMirror")?.CodeMirror?.getValue() ===
          query,
        SANDBOX_EXAMPLE_OPERATION,
      );
      expect(
        await editorText(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"),
      ).toBe(JSON.stringify({ scopes: ["VOIP"] }, null, 2));
      const sandboxLink = page.getByRole("link", { name: "Apollo Sandbox (needs internet)" });
      expect(await sandboxLink.getAttribute("href")).toBe("/sandbox");

      await page.click(".graphiql-query-editor .CodeMirror");
      await page.keyboard.press("Control+Enter");
      await page.waitForFunction(() =>
        document
          .querySelector(".result-window .CodeMirror")
          ?.CodeMirror?.getValue()
          .includes('"token"'),
      );
      const result = JSON.parse((await editorText(".result-window .CodeMirror"))!) as {
        data: { issueMyToken: { token: string; scopes: string[] } };
      };
      expect(result.data.issueMyToken.token).toMatch(JWT);
      expect(result.data.issueMyToken.scopes).toEqual(["VOIP"]);
      expect(await page.locator(".result-window").innerText()).toContain('"token"');

      await page.screenshot({ path: "/tmp/explorer.png" });

      // A dialog adds <style> elements: the page's CSP must allow what GraphiQL does.
      await page.getByRole("button", { name: "Open settings dialog" }).click();
      await page.getByRole("dialog").waitFor();
      await page.keyboard.press("Escape");
      await page.getByRole("dialog").waitFor({ state: "detached" });

      expect(offMachine).toEqual([]);
      expect(pageErrors).toEqual([]);
      expect(await page.evaluate(() => (globalThis as any).cspViolations)).toEqual([]);
      expect(requested.length).toBeGreaterThan(0);
      for (const url of requested) {
        expect(new URL(url).origin, url).toBe(origin);
      }
    }, 60_000);

    it("sees Sandbox's CDN requests at /sandbox, so the check above would catch the explorer's", async () => {
      const before = offMachine.length;
      const cdn = page.waitForRequest((request) =>
        request.url().startsWith("https://embeddable-sandbox.cdn.apollographql.com/"),
      );
      await page.goto(`${origin}/sandbox`);
      await cdn;
      expect(offMachine.length).toBeGreaterThan(before);
      expect(offMachine.slice(before).every((url) => !url.startsWith(origin))).toBe(true);
    }, 60_000);
  },
);
