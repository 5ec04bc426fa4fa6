import type { GatewayAssignedErrorCode } from "@acs-identity-gateway/client";
import { expectTypeOf, it } from "vitest";
import type { ErrorCode } from "../../src/graphql/errors.js";

/**
 * The gateway's error codes and the ones the client package publishes are one list written twice
 * (the image builds the gateway without the client's sources). `npm run typecheck` fails here when
 * a code is added to, or dropped from, only one of them.
 */
it("the gateway assigns exactly the codes the client package publishes", () => {
  expectTypeOf<ErrorCode>().toEqualTypeOf<GatewayAssignedErrorCode>();
});
