import { describe, expect, it } from "vitest";
import { createProvisioner, recoverPendingIdentities } from "../../src/identity/provisioning.js";
import { createMemoryUserMappingStore } from "../../src/identity/user-mapping-store.js";
import { createLogger } from "../../src/logger.js";

function capturing() {
  const lines: { level: number; msg: string }[] = [];
  const logger = createLogger(
    { level: "info" },
    {
      write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }),
    },
  );
  return { logger, lines };
}

describe("start-up recovery of pending identities", () => {
  it("confirms what a crash left recorded but unconfirmed", async () => {
    const store = createMemoryUserMappingStore();
    const T0 = Date.now();
    expect(await store.reserve("ada", "r1", T0 + 60_000, T0)).toEqual({ kind: "reserved" });
    expect(await store.record("ada", "r1", "8:acs:x_ada")).toBe(true);
    const { logger } = capturing();
    const provisioner = createProvisioner({
      store,
      identity: { deleteUser: async () => {} },
      logger,
    });

    expect(await recoverPendingIdentities(provisioner, logger)).toBe(1);
    expect(await store.find("ada")).toEqual({ userId: "8:acs:x_ada", confirmed: true });
    provisioner.close();
  });

  it("does not stop the start when the store cannot be asked: it logs, and callers confirm their own", async () => {
    const { logger, lines } = capturing();
    const down = { recover: () => Promise.reject(new Error("Command timed out")) };

    expect(await recoverPendingIdentities(down, logger)).toBe(0);
    expect(lines).toMatchObject([
      { level: 40, msg: "could not look for pending identities at start" },
    ]);
  });
});
