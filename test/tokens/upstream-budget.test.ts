import { describe, expect, it } from "vitest";
import { DomainError } from "../../src/errors.js";
import type { IdentityProvider, IssuedToken } from "../../src/identity/identity-provider.js";
import {
  meterUpstream,
  type Actor,
  type UpstreamBudget,
} from "../../src/tokens/upstream-budget.js";

const USER = "8:acs:2dee53b4-368b-45b4-ab52-8493fb117652_00000005-14a2-493b-8a72-5a3a0d000081";

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * A budget whose charges the test settles, and an ACS that counts its issues. With `holdAnswers`,
 * ACS answers an issue only when the test resolves it (`answers`); `called(n)` resolves once n
 * issues reached ACS.
 */
function rig(options: { holdAnswers?: boolean } = {}) {
  const charges: { actor: Actor; settle: ReturnType<typeof deferred<void>> }[] = [];
  const budget: UpstreamBudget = {
    charge(actor) {
      const settle = deferred();
      charges.push({ actor, settle });
      return settle.promise;
    },
  };
  let issued = 0;
  const answers: ReturnType<typeof deferred<void>>[] = [];
  const waiters: { n: number; reached: () => void }[] = [];
  const identity = {
    issueToken: async (): Promise<IssuedToken> => {
      const token = { token: `token-${++issued}`, expiresOn: Date.now() + 3_600_000 };
      for (const waiter of waiters.filter((w) => w.n <= issued)) {
        waiter.reached();
      }
      if (options.holdAnswers) {
        const answer = deferred();
        answers.push(answer);
        await answer.promise;
      }
      return token;
    },
  } as unknown as IdentityProvider;
  const called = (n: number) =>
    issued >= n ? Promise.resolve() : new Promise<void>((reached) => waiters.push({ n, reached }));
  return {
    upstream: meterUpstream(identity, budget),
    charges,
    issued: () => issued,
    answers,
    called,
  };
}

const alice: Actor = { key: "alice", isAdmin: false };
const bob: Actor = { key: "bob", isAdmin: false };

describe("the metered upstream charges ACS calls, once each", () => {
  it("identical issues of one caller asked while the first is still being charged share its one call and its one charge", async () => {
    const { upstream, charges, issued } = rig();
    const asks = Array.from({ length: 100 }, () => upstream.issueToken(alice, USER, ["chat"], 60));
    expect(charges).toHaveLength(1);
    charges[0]!.settle.resolve();
    const tokens = await Promise.all(asks);
    expect(new Set(tokens.map((t) => t.token))).toEqual(new Set(["token-1"]));
    expect(issued()).toBe(1);
  });

  it("an issue asked after the call was sent makes (and is charged for) its own call", async () => {
    const { upstream, charges, issued } = rig();
    const first = upstream.issueToken(alice, USER, ["chat"], 60);
    charges[0]!.settle.resolve();
    await first; // sent and answered: a revoke may have happened since
    const second = upstream.issueToken(alice, USER, ["chat"], 60);
    expect(charges).toHaveLength(2);
    charges[1]!.settle.resolve();
    expect((await second).token).toBe("token-2");
    expect(issued()).toBe(2);
  });

  it("an issue asked once the first was charged, while ACS has not answered it yet, makes (and is charged for) its own call", async () => {
    const { upstream, charges, issued, answers, called } = rig({ holdAnswers: true });
    const first = upstream.issueToken(alice, USER, ["chat"], 60);
    charges[0]!.settle.resolve();
    await called(1); // charged and sent; ACS holds the answer
    // A revoke may have been confirmed since the first call was sent: its token must not serve
    // an ask that began after that.
    const second = upstream.issueToken(alice, USER, ["chat"], 60);
    expect(charges).toHaveLength(2);
    charges[1]!.settle.resolve();
    await called(2);
    for (const answer of answers) {
      answer.resolve();
    }
    expect([(await first).token, (await second).token]).toEqual(["token-1", "token-2"]);
    expect(issued()).toBe(2);
  });

  it("shares nothing between callers, tokens or lifetimes", async () => {
    const { upstream, charges, issued } = rig();
    const asks = [
      upstream.issueToken(alice, USER, ["chat"], 60),
      upstream.issueToken(bob, USER, ["chat"], 60),
      upstream.issueToken(alice, USER, ["chat", "voip"], 60),
      upstream.issueToken(alice, USER, ["chat"], 90),
      upstream.issueToken(alice, USER, ["chat"]),
    ];
    expect(charges.map((c) => c.actor.key)).toEqual(["alice", "bob", "alice", "alice", "alice"]);
    for (const charge of charges) {
      charge.settle.resolve();
    }
    await Promise.all(asks);
    expect(issued()).toBe(5);
  });

  it("a refused charge makes no call: the caller's identical asks get its RATE_LIMITED", async () => {
    const { upstream, charges, issued } = rig();
    const asks = Array.from({ length: 3 }, () => upstream.issueToken(alice, USER, ["chat"], 60));
    for (const charge of charges) {
      charge.settle.reject(new DomainError("rate-limited", "spent", { retryAfterSeconds: 5 }));
    }
    for (const ask of asks) {
      await expect(ask).rejects.toMatchObject({ kind: "rate-limited" });
    }
    expect(charges).toHaveLength(1);
    expect(issued()).toBe(0);
  });
});
