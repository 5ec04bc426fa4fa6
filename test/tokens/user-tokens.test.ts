import { describe, expect, it } from "vitest";
import { createMemoryTokenCache } from "../../src/cache/memory-token-cache.js";
import type { MeteredUpstream } from "../../src/tokens/upstream-budget.js";
import { createUserTokens } from "../../src/tokens/user-tokens.js";

/**
 * The order a delete keeps with the identity directory. The caller's next `issueMyToken`
 * provisions through the directory, which hands back the live record for the caller's external
 * id: if a delete answered before the directory marked the identity deleted, that call could be
 * given the gone identity again (seen once in CI as a mapping-store conflict right after
 * `deleteMe`). A real in-process token cache; the upstream and the directory are recorders.
 */
describe("a delete and the directory", () => {
  it("answers only after the directory's first attempt to mark the identity deleted ended", async () => {
    const steps: string[] = [];
    let markDeleted!: () => void;
    const users = createUserTokens({
      upstream: {
        deleteUser: async () => {
          steps.push("acs delete");
        },
      } as unknown as MeteredUpstream,
      cache: createMemoryTokenCache({ minRemainingMs: 0 }),
      mappings: { forgetDeleted: async () => void steps.push("mapping removed") },
      audit: () => {},
      directory: {
        tokenMinted: async () => {},
        revoked: async () => {},
        deleted: () =>
          new Promise<void>((resolve) => {
            steps.push("directory write begun");
            markDeleted = () => {
              steps.push("directory write ended");
              resolve();
            };
          }),
      },
      now: () => 0,
    });

    const answered = users
      .delete({ key: "k", isAdmin: false }, "8:acs:r_user", "self-service")
      .then(() => steps.push("answered"));
    await expect.poll(() => steps).toContain("directory write begun");
    // However long the write takes, the delete has not answered.
    for (let turn = 0; turn < 100; turn++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(steps).not.toContain("answered");
    markDeleted();
    await answered;
    expect(steps.indexOf("directory write ended")).toBeLessThan(steps.indexOf("answered"));
  });
});
