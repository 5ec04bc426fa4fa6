import type { CommunicationIdentityClient, TokenScope } from "@azure/communication-identity";
import type { TokenCacheKey } from "../../src/cache/token-cache.js";
import type { Emulator, EmulatorOptions } from "@acs-identity-gateway/emulator";
import type { IssuedToken } from "../../src/identity/identity-provider.js";
import { createLogger } from "../../src/logger.js";
import { normalizeScopes, type AcsScope } from "../../src/tokens/scopes.js";
import { introspect } from "../helpers/introspect.js";
import { identityClient, startTestEmulator } from "../helpers/emulator.js";

export const silentLogger = createLogger({ level: "silent" });

/**
 * The upstream side of the cache tests: the real SDK against the emulator. Upstream calls are
 * counted by the emulator itself (`issued()`), and every token text handed out is remembered so a
 * test can look for it in Redis.
 */
export interface Upstream {
  emulator: Emulator;
  sdk: CommunicationIdentityClient;
  /** Successful issueAccessToken calls the emulator answered so far. */
  issued(): number;
  /** Every token the SDK returned. */
  tokens: Set<string>;
  createUser(): Promise<string>;
  key(userId: string, scopes: AcsScope[], expiresInMinutes?: number): TokenCacheKey;
  /** A `mint` for `key`; it waits for `gate` before the call, and with `fail` rejects instead. */
  mint(
    key: TokenCacheKey,
    options?: { gate?: Promise<unknown>; fail?: boolean },
  ): () => Promise<IssuedToken>;
  revoke(userId: string): Promise<void>;
  deleteUser(userId: string): Promise<void>;
  isActive(token: string): Promise<boolean>;
  close(): Promise<void>;
}

export async function startUpstream(options: EmulatorOptions = {}): Promise<Upstream> {
  const emulator = await startTestEmulator(options);
  const sdk = identityClient(emulator);
  const tokens = new Set<string>();
  return {
    emulator,
    sdk,
    tokens,
    issued: () => emulator.counters.issueAccessToken,
    async createUser() {
      return (await sdk.createUser()).communicationUserId;
    },
    key: (userId, scopes, expiresInMinutes) => ({
      userId,
      scopes: normalizeScopes(scopes),
      expiresInMinutes,
    }),
    mint(key, options = {}) {
      return async () => {
        if (options.gate) {
          await options.gate;
        }
        if (options.fail) {
          throw new Error("upstream failed (test)");
        }
        const answer = await sdk.getToken(
          { communicationUserId: key.userId },
          key.scopes as TokenScope[],
          key.expiresInMinutes === undefined ? {} : { tokenExpiresInMinutes: key.expiresInMinutes },
        );
        tokens.add(answer.token);
        return { token: answer.token, expiresOn: answer.expiresOn.getTime() };
      };
    },
    revoke: (userId) => sdk.revokeTokens({ communicationUserId: userId }),
    deleteUser: (userId) => sdk.deleteUser({ communicationUserId: userId }),
    async isActive(token) {
      return (await introspect(emulator, token)).active;
    },
    close: () => emulator.close(),
  };
}

/** A promise and the function that resolves it: a test step waits on it instead of on time. */
export function signal<T = void>(): { promise: Promise<T>; fire: (value: T) => void } {
  let fire!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (fire = resolve));
  return { promise, fire };
}

/**
 * Resolves once `check` holds, checking again after each macrotask turn. For conditions that only
 * an external process can make true (a reconnect, a replay); bounded so a broken build fails.
 */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  what: string,
  ms = 20_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
