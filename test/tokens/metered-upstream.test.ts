import { describe, expect, it } from "vitest";
import type { IdentityProvider } from "../../src/identity/identity-provider.js";
import {
  meterUpstream,
  type Actor,
  type UpstreamBudget,
} from "../../src/tokens/upstream-budget.js";

/**
 * The metered upstream is derived from the provider, method by method: an ACS operation added to
 * the provider is charged to the acting caller without being listed anywhere else.
 */
const alice: Actor = { key: "alice", isAdmin: false };

function countingBudget() {
  const charged: string[] = [];
  const budget: UpstreamBudget = {
    charge: async (actor) => void charged.push(actor.key),
  };
  return { budget, charged };
}

describe("meterUpstream", () => {
  it("charges the caller once per call of any provider method, then calls it without the actor", async () => {
    const calls: unknown[][] = [];
    // A provider with an operation IdentityProvider does not know yet, as a class (prototype
    // methods, `this`) the way a real client might be written.
    class Provider {
      prefix = "user";
      async createUser() {
        calls.push(["createUser"]);
        return `${this.prefix}-1`;
      }
      async renameUser(userId: string, name: string) {
        calls.push(["renameUser", userId, name]);
      }
    }
    const { budget, charged } = countingBudget();
    const upstream = meterUpstream(new Provider() as unknown as IdentityProvider, budget);
    const metered = upstream as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;

    expect(await upstream.createUser(alice)).toBe("user-1");
    await metered.renameUser!(alice, "8:acs:x_y", "Alice");

    expect(charged).toEqual(["alice", "alice"]);
    expect(calls).toEqual([["createUser"], ["renameUser", "8:acs:x_y", "Alice"]]);
  });

  it("makes no call when the charge is refused", async () => {
    let created = 0;
    const upstream = meterUpstream(
      { createUser: async () => `user-${++created}` } as unknown as IdentityProvider,
      { charge: () => Promise.reject(new Error("spent")) },
    );
    await expect(upstream.createUser(alice)).rejects.toThrow("spent");
    expect(created).toBe(0);
  });

  it("deletes uncharged only through `uncharged`, the gateway's own clean-up", async () => {
    const deleted: string[] = [];
    const { budget, charged } = countingBudget();
    const upstream = meterUpstream(
      { deleteUser: async (userId: string) => void deleted.push(userId) } as IdentityProvider,
      budget,
    );
    await upstream.uncharged.deleteUser("8:acs:x_orphan");
    await upstream.deleteUser(alice, "8:acs:x_mine");
    expect(deleted).toEqual(["8:acs:x_orphan", "8:acs:x_mine"]);
    expect(charged).toEqual(["alice"]);
  });
});
