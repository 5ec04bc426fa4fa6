import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext } from "playwright-core";

/** Debian's Chromium, or CHROMIUM_PATH: playwright-core never downloads a browser of its own. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const hasChromium = existsSync(CHROMIUM);
/** Appended to a describe's name, so a skipped run says why. */
export const withoutChromium = hasChromium
  ? ""
  : ` (skipped: no Chromium at ${CHROMIUM}; set CHROMIUM_PATH)`;

export interface HeadlessChromium {
  context: BrowserContext;
  /** The fresh profile folder (removed by `close`); tests may write screenshots there. */
  profile: string;
  close(): Promise<void>;
}

/**
 * Headless Chromium with a fresh profile and the flags this machine needs: no sandbox as root,
 * and no background networking (with none, a closed network refuses Chromium's own connections,
 * many at a time, at every start).
 */
export async function launchChromium(viewport: {
  width: number;
  height: number;
}): Promise<HeadlessChromium> {
  const profile = mkdtempSync(join(tmpdir(), "acsgw-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    viewport,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    context,
    profile,
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
