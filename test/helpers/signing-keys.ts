import { generateKeyPair } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FILE = join(ROOT, "node_modules/.cache/acsgw-test-keys/rsa-2048.json");
/** More than any test process has emulators alive at once. */
const POOL_SIZE = 16;
let pool: Promise<string[]> | undefined;
let next = 0;

/**
 * A 2048-bit RSA private key (PKCS#8 PEM) for an emulator a test starts in its own process: the
 * embedded one of an in-process gateway, or `startTestEmulator`'s. Generating one is a search for
 * primes, 100 to 300 ms of CPU (most of an in-process gateway's start), and the suite starts a few
 * hundred. So 16 keys are made once per checkout (node_modules/.cache, beside the directory
 * template) and handed out in turn: emulators alive at the same time in one test process still
 * sign with different keys, as separate emulators do. Emulators with a state file, and every
 * emulator or gateway a test spawns as a process, still make their own key as in production.
 */
export async function testSigningKeyPem(): Promise<string> {
  pool ??= loadPool();
  pool.catch(() => (pool = undefined));
  const keys = await pool;
  return keys[next++ % keys.length]!;
}

async function loadPool(): Promise<string[]> {
  try {
    const keys = JSON.parse(readFileSync(FILE, "utf8")) as unknown;
    if (Array.isArray(keys) && keys.length === POOL_SIZE) {
      return keys as string[];
    }
  } catch {
    // Not made yet in this checkout.
  }
  // In parallel on libuv's threads. Test processes that start at once may each make a set: each
  // writes its own whole file and renames it into place, so none reads a partial one.
  const keys = await Promise.all(
    Array.from({ length: POOL_SIZE }, async () => {
      const { privateKey } = await promisify(generateKeyPair)("rsa", { modulusLength: 2048 });
      return privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    }),
  );
  mkdirSync(dirname(FILE), { recursive: true });
  const partial = `${FILE}.${process.pid}.tmp`;
  writeFileSync(partial, JSON.stringify(keys), { mode: 0o600 });
  renameSync(partial, FILE);
  return keys;
}
