import type { CommunicationIdentityClient, TokenScope } from "@azure/communication-identity";
import type { TokenCacheKey } from "../../src/cache/token-cache.js";
import type { Emulator } from "../../src/emulator/index.js";
import type { IssuedToken } from "../../src/identity/identity-provider.js";
import { createLogger } from "../../src/logger.js";
import { normalizeScopes, type AcsScope } from "../../src/tokens/scopes.js";
import { introspect } from "../helpers/introspect.js";
import { identityClient, startTestEmulator } from "../helpers/emulator.js";

export const silentLogger = createLogger({ level: "silent" });

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

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
  /** A `mint` for `key`; `delayMs` before the call, `fail` to reject instead (after the delay). */
  mint(
    key: TokenCacheKey,
    options?: { delayMs?: number; fail?: boolean },
  ): () => Promise<IssuedToken>;
  revoke(userId: string): Promise<void>;
  deleteUser(userId: string): Promise<void>;
  isActive(token: string): Promise<boolean>;
  close(): Promise<void>;
}

export async function startUpstream(): Promise<Upstream> {
  const emulator = await startTestEmulator();
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
        if (options.delayMs) {
          await sleep(options.delayMs);
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
