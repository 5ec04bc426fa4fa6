import { readFileSync, copyFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import {
  hasChromium,
  launchChromium,
  withoutChromium,
  type HeadlessChromium,
} from "../helpers/browser.js";
import { startGateway } from "../helpers/gateway.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const MINUTE = 60_000;

declare const window: {
  demo: {
    refreshes: number;
    waitForRefreshes(n: number): Promise<number>;
    expiresOn(): Promise<string>;
  };
};

/** Serves the example page and its bundle from its own origin (another port than the gateway). */
async function servePage(bundle: string): Promise<{ origin: string; close(): Promise<void> }> {
  const html = readFileSync(join(root, "examples/browser/index.html"), "utf8");
  const server: Server = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://x").pathname;
    if (path === "/bundle.js") {
      response.writeHead(200, { "content-type": "text/javascript" }).end(bundle);
    } else if (path === "/") {
      response.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe.skipIf(!hasChromium)(`the example page in Chromium${withoutChromium}`, () => {
  // The emulator's clock, moved by the test: a negative offset makes ACS mint tokens that are
  // already close to expiry, as a long-lived page sees them near the end of their life.
  let offsetMs = 0;
  let app: App;
  let gatewayUrl: string;
  let page$: { origin: string; close(): Promise<void> };
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let browser: HeadlessChromium | undefined;

  beforeAll(async () => {
    app = await startGateway({}, { emulator: { now: () => Date.now() + offsetMs } });
    gatewayUrl = await app.listen(0);
    const bundled = await build({
      entryPoints: [join(root, "examples/browser/main.ts")],
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      write: false,
      logLevel: "silent",
    });
    page$ = await servePage(bundled.outputFiles[0]!.text);
    browser = await launchChromium({ width: 640, height: 400 });
    ({ context, profile } = browser);
    page = context.pages()[0] ?? (await context.newPage());
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await page$?.close();
    await app?.close();
  });

  it("gets a token through CORS and refreshes it once per proactive window, not in a storm", async () => {
    const gatewayOrigin = new URL(gatewayUrl).origin;
    expect(gatewayOrigin).not.toBe(page$.origin);
    // Chromium hides preflights from Playwright; the answers' CORS header shows they passed.
    const allowedFor: (string | undefined)[] = [];
    page.on("response", (response) => {
      if (response.url() === gatewayUrl) {
        allowedFor.push(response.headers()["access-control-allow-origin"]);
      }
    });

    // First token: 60 minutes long, but minted 48 minutes "ago": 12 minutes left, just outside
    // the SDK's 10-minute proactive window. The gateway does not cache it (under 15 minutes).
    offsetMs = -48 * MINUTE;
    await page.clock.install({ time: Date.now() });
    await page.goto(`${page$.origin}/?gateway=${encodeURIComponent(gatewayUrl)}`);
    await page.waitForSelector("body[data-state=ready]");
    expect(await page.evaluate(() => window.demo.refreshes)).toBe(1);
    expect(allowedFor).toEqual([page$.origin]);
    const first = Date.parse(await page.evaluate(() => window.demo.expiresOn()));
    expect(first - Date.now()).toBeLessThan(13 * MINUTE);

    // From now on ACS mints full-length tokens. Two minutes later the first token enters the
    // proactive window: exactly one refresh, which brings a token with about an hour left.
    offsetMs = 0;
    await page.clock.fastForward(2 * MINUTE + 1_000);
    expect(await page.evaluate(() => window.demo.waitForRefreshes(2))).toBe(2);
    const second = Date.parse(await page.evaluate(() => window.demo.expiresOn()));
    expect(second - first).toBeGreaterThan(40 * MINUTE);

    // Forty more minutes: the new token is still outside its window, so no call at all.
    await page.clock.fastForward(40 * MINUTE);
    await page.evaluate(() => window.demo.expiresOn());
    expect(await page.evaluate(() => window.demo.refreshes)).toBe(2);
    expect(app.emulator!.counters.issueAccessToken).toBe(2);

    const shot = join(profile, "frontend-example.png");
    await page.screenshot({ path: shot });
    expect(readFileSync(shot).subarray(1, 4).toString()).toBe("PNG");
    if (process.env.UPDATE_SCREENSHOTS === "1") {
      copyFileSync(shot, join(root, "docs/frontend-example.png"));
    }
  });

  it("is refused by the browser when the page's origin is not allowed", async () => {
    const other = await startGateway({ CORS_ORIGINS: "https://app.example.com" });
    try {
      const otherUrl = await other.listen(0);
      const outcome = await page.evaluate(async (url) => {
        try {
          await fetch(url, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ query: "{ me { subject } }" }),
          });
          return "answered";
        } catch (error) {
          return String(error);
        }
      }, otherUrl);
      expect(outcome).toContain("Failed to fetch");
    } finally {
      await other.close();
    }
  });
});
