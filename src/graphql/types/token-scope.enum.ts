import { registerEnumType } from "type-graphql";

/**
 * GraphQL names are enum-style; the values are the ACS scope strings, so resolvers pass them to
 * the token service without a lookup table.
 */
export enum TokenScope {
  CHAT = "chat",
  CHAT_JOIN = "chat.join",
  CHAT_JOIN_LIMITED = "chat.join.limited",
  VOIP = "voip",
  VOIP_JOIN = "voip.join",
}

registerEnumType(TokenScope, {
  name: "TokenScope",
  description: "What an ACS access token may be used for.",
  valuesConfig: {
    CHAT: { description: "`chat`: full chat access." },
    CHAT_JOIN: {
      description: "`chat.join`: join chat threads the user was added to (Teams interop).",
    },
    CHAT_JOIN_LIMITED: {
      description: "`chat.join.limited`: `chat.join` without adding or removing participants.",
    },
    VOIP: { description: "`voip`: full calling access." },
    VOIP_JOIN: { description: "`voip.join`: join calls and rooms (no starting calls)." },
  },
});
