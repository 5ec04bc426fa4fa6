import type { TokenScope } from "./generated/graphql.js";

/**
 * A scope as the ACS SDKs and docs spell it (`CommunicationTokenScope` in
 * `@azure/communication-identity`: `"voip"`, `"chat.join"`, ...). The gateway's GraphQL enum spells
 * the same scopes `VOIP`, `CHAT_JOIN`, ...; the client takes either.
 */
export type AcsTokenScope = "chat" | "chat.join" | "chat.join.limited" | "voip" | "voip.join";

/** What `createTokenRefresher` accepts for `scopes`: the ACS spelling or the GraphQL enum's. */
export type TokenScopeInput = TokenScope | AcsTokenScope;

const BY_ACS_NAME: Readonly<Record<AcsTokenScope, TokenScope>> = {
  chat: "CHAT",
  "chat.join": "CHAT_JOIN",
  "chat.join.limited": "CHAT_JOIN_LIMITED",
  voip: "VOIP",
  "voip.join": "VOIP_JOIN",
};

const ENUM_NAMES: ReadonlySet<string> = new Set(Object.values(BY_ACS_NAME));

/**
 * The GraphQL enum name of `scope`, in either spelling; a TypeError naming the accepted values for
 * anything else, so a typo fails where it is written rather than as a gateway error later.
 */
export function toTokenScope(scope: TokenScopeInput): TokenScope {
  if (typeof scope === "string") {
    if (ENUM_NAMES.has(scope)) {
      return scope as TokenScope;
    }
    if (Object.hasOwn(BY_ACS_NAME, scope)) {
      return BY_ACS_NAME[scope as AcsTokenScope];
    }
  }
  throw new TypeError(
    `unknown scope ${JSON.stringify(scope)}: use one of ${Object.keys(BY_ACS_NAME).join(", ")} (or ${[...ENUM_NAMES].join(", ")})`,
  );
}
