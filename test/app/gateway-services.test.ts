import { describe, expect, it } from "vitest";
import { compensatingDelete } from "../../src/app/gateway-services.js";
import { createLogger } from "../../src/logger.js";

/**
 * The provisioner's compensation deletes at ACS an identity its mapping store could not take.
 * Deleting one that is not an orphan loses it for good (an admin's, with its chats), so the
 * directory is asked first, and a directory that cannot answer keeps the identity.
 */
describe("the provisioner's compensating delete", () => {
  function setUp(holds: (userId: string) => Promise<boolean>) {
    const deleted: string[] = [];
    const lines: { level: number; msg: string; userId?: string }[] = [];
    const logger = createLogger(
      { level: "info" },
      { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) },
    );
    const remove = compensatingDelete(
      { holdsByExternalId: holds },
      async (userId) => void deleted.push(userId),
      logger,
    );
    return { remove, deleted, lines };
  }

  it("deletes an identity the directory does not hold by external id", async () => {
    const { remove, deleted } = setUp(async () => false);
    await remove("8:acs:r_orphan");
    expect(deleted).toEqual(["8:acs:r_orphan"]);
  });

  it("keeps one the directory holds by external id", async () => {
    const { remove, deleted, lines } = setUp(async () => true);
    await remove("8:acs:r_admins");
    expect(deleted).toEqual([]);
    expect(lines).toEqual([expect.objectContaining({ userId: "8:acs:r_admins", level: 30 })]);
  });

  it("keeps one when the directory cannot answer, and says so with its id", async () => {
    const { remove, deleted, lines } = setUp(async () => {
      throw new Error("canceling statement due to statement timeout");
    });
    await remove("8:acs:r_unknown");
    expect(deleted).toEqual([]);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 40,
        userId: "8:acs:r_unknown",
        msg: expect.stringContaining("delete it by its id"),
      }),
    ]);
  });
});
