import { AzureCommunicationTokenCredential } from "@azure/communication-common";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { App } from "../../src/app.js";
import {
  createGatewayClient,
  createTokenRefresher,
  GatewayClientError,
  persistedOperations,
} from "@acs-identity-gateway/client";
import { startGateway } from "../helpers/gateway.js";

/** A JWT-shaped token (unsigned: the refresher only reads `exp`) expiring at `expMs`. */
function fakeJwt(expMs: number): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "RS256" })}.${part({ exp: Math.floor(expMs / 1000) })}.sig`;
}

function graphqlAnswer(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function tokenAnswer(expMs: number) {
  return graphqlAnswer({
    data: {
      issueMyToken: {
        token: fakeJwt(expMs),
        expiresOn: new Date(expMs).toISOString(),
        scopes: ["VOIP"],
        user: { id: "8:acs:x_y" },
      },
    },
  });
}

function throttled(code: string, retryAfterSeconds: number) {
  return graphqlAnswer({
    errors: [{ message: "slow down", extensions: { code, retryAfterSeconds } }],
    data: null,
  });
}

afterEach(() => {
  vi.useRealTimers();
});

describe("createTokenRefresher against a running gateway", () => {
  let app: App;
  let url: string;
  beforeAll(async () => {
    app = await startGateway();
    url = await app.listen(0);
  });
  afterAll(async () => {
    await app?.close();
  });

  it("returns a token for the caller's own identity", async () => {
    const refresher = createTokenRefresher({ url, scopes: ["VOIP"], expiresInMinutes: 60 });
    const token = await refresher();
    expect(token.split(".")).toHaveLength(3);
    // A second call is served from the gateway's cache: the same token.
    expect(await refresher()).toBe(token);
  });

  it("feeds the ACS SDK's AzureCommunicationTokenCredential", async () => {
    const credential = new AzureCommunicationTokenCredential({
      tokenRefresher: createTokenRefresher({ url, scopes: ["VOIP"] }),
    });
    try {
      const { token, expiresOnTimestamp } = await credential.getToken();
      expect(token.split(".")).toHaveLength(3);
      expect(expiresOnTimestamp).toBeGreaterThan(Date.now() + 60 * 60_000);
    } finally {
      credential.dispose();
    }
  });

  it("takes scopes as the ACS SDKs spell them, and the token carries them", async () => {
    const answers: any[] = [];
    const recording: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      answers.push(await response.clone().json());
      return response;
    };
    const refresher = createTokenRefresher({
      url,
      scopes: ["chat.join", "voip"],
      fetch: recording,
    });
    const token = await refresher();
    expect(answers[0].data.issueMyToken.scopes.sort()).toEqual(["CHAT_JOIN", "VOIP"]);
    // The same scopes in the enum's spelling are the same cache entry: the same token.
    expect(await createTokenRefresher({ url, scopes: ["VOIP", "CHAT_JOIN"] })()).toBe(token);
  });

  it("issues for a given userId with issueToken", async () => {
    const created = await app.server.execute({ query: "mutation { createUser { id } }" });
    const userId = (created.body as any).singleResult.data.createUser.id as string;
    const refresher = createTokenRefresher({ url, scopes: ["CHAT"], userId });
    expect((await refresher()).length).toBeGreaterThan(20);
  });

  it("says IDENTITY_CHANGED once the caller's identity was replaced, rather than hand over another user's token", async () => {
    const refresher = createTokenRefresher({ url, scopes: ["CHAT"] });
    await refresher();
    const own = (await app.server.execute({ query: "{ me { communicationUser { id } } }" }))
      .body as any;
    const before = own.singleResult.data.me.communicationUser.id as string;
    await app.server.execute({ query: "mutation { deleteMe { deletedAt } }" });
    for (let i = 0; i < 2; i++) {
      const error = (await refresher().catch((e: unknown) => e)) as GatewayClientError;
      expect(error.code).toBe("IDENTITY_CHANGED");
      expect(error.extensions).toEqual({ previousUserId: before, userId: expect.any(String) });
      expect(error.extensions.userId).not.toBe(before);
    }
    // A new refresher (and new ACS clients) for the new identity.
    expect((await createTokenRefresher({ url, scopes: ["CHAT"] })()).split(".")).toHaveLength(3);
  });

  it("throws a typed error carrying the gateway's code", async () => {
    const refresher = createTokenRefresher({ url, scopes: ["CHAT"], userId: "not-an-acs-id" });
    const error = await refresher().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GatewayClientError);
    expect((error as GatewayClientError).code).toBe("BAD_USER_INPUT");
  });

  it("sends only the id when told to: the gateway knows the client's own operations by id", async () => {
    // A gateway of its own, whose automatic-persisted-query cache has never seen the text.
    const fresh = await startGateway();
    const freshUrl = await fresh.listen(0);
    const bodies: any[] = [];
    const spy: typeof fetch = async (input, init) => {
      bodies.push(JSON.parse(String(init?.body)));
      return fetch(input, init);
    };
    const refresher = createTokenRefresher({
      url: freshUrl,
      scopes: ["VOIP"],
      send: "id",
      fetch: spy,
    });
    try {
      expect((await refresher()).split(".")).toHaveLength(3);
      await refresher();
    } finally {
      await fresh.close();
    }
    expect(bodies.map((b) => b.query === undefined)).toEqual([true, true]);
    expect(bodies[0].extensions.persistedQuery.sha256Hash).toBe(
      persistedOperations.IssueMyToken.id,
    );
  });

  it("sends the text once when a gateway answers PERSISTED_QUERY_NOT_FOUND, then the id again", async () => {
    const bodies: any[] = [];
    // As an older gateway, or one whose APQ cache lost the text, answers an unknown id.
    const spy: typeof fetch = async (input, init) => {
      bodies.push(JSON.parse(String(init?.body)));
      if (bodies.length === 1) {
        return Response.json({
          errors: [
            {
              message: "PersistedQueryNotFound",
              extensions: { code: "PERSISTED_QUERY_NOT_FOUND" },
            },
          ],
        });
      }
      return fetch(input, init);
    };
    const refresher = createTokenRefresher({ url, scopes: ["VOIP"], send: "id", fetch: spy });
    expect((await refresher()).split(".")).toHaveLength(3);
    await refresher();
    expect(bodies.map((b) => b.query === undefined)).toEqual([true, false, true]);
  });
});

describe("createTokenRefresher's rules", () => {
  it("waits retryAfterSeconds after RATE_LIMITED and UPSTREAM_THROTTLED, then succeeds", async () => {
    vi.useFakeTimers({ now: Date.parse("2026-01-01T00:00:00Z") });
    const answers = [
      throttled("RATE_LIMITED", 7),
      throttled("UPSTREAM_THROTTLED", 3),
      tokenAnswer(Date.now() + 3600_000),
    ];
    const calls: number[] = [];
    const refresher = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      fetch: async () => {
        calls.push(Date.now());
        return answers.shift()!;
      },
    });
    const result = refresher();
    await vi.advanceTimersByTimeAsync(6_999);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(3_000);
    await expect(result).resolves.toMatch(/\./);
    expect(calls.map((t) => t - calls[0]!)).toEqual([0, 7_000, 10_000]);
  });

  it("gives up after maxRetries and throws the gateway's code with retryAfterSeconds", async () => {
    vi.useFakeTimers();
    const refresher = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      maxRetries: 1,
      fetch: async () => throttled("RATE_LIMITED", 2),
    });
    const outcome = refresher().catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(2_000);
    const error = (await outcome) as GatewayClientError;
    expect(error.code).toBe("RATE_LIMITED");
    expect(error.retryAfterSeconds).toBe(2);
  });

  it("does not wait out a throttle longer than maxRetryAfterSeconds", async () => {
    let calls = 0;
    const refresher = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      maxRetryAfterSeconds: 10,
      fetch: async () => {
        calls++;
        return throttled("UPSTREAM_THROTTLED", 30);
      },
    });
    await expect(refresher()).rejects.toMatchObject({ code: "UPSTREAM_THROTTLED" });
    expect(calls).toBe(1);
  });

  it("stops waiting for a retry as soon as the SDK's signal aborts", async () => {
    vi.useFakeTimers();
    let calls = 0;
    const refresher = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      fetch: async () => {
        calls++;
        return throttled("RATE_LIMITED", 30);
      },
    });
    const controller = new AbortController();
    const outcome = refresher(controller.signal).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1_000);
    controller.abort();
    const error = (await outcome) as Error;
    expect(error.name).toBe("AbortError");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls).toBe(1);
  });

  it("passes the signal to fetch and rethrows its abort, not a network error", async () => {
    const controller = new AbortController();
    const refresher = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      fetch: (_input, init) =>
        new Promise((_resolve, reject) => {
          init!.signal!.addEventListener("abort", () => reject(init!.signal!.reason));
        }),
    });
    const outcome = refresher(controller.signal).catch((e: unknown) => e);
    controller.abort(new DOMException("call ended", "AbortError"));
    expect(((await outcome) as Error).message).toBe("call ended");
  });

  it("bridges the SDK's AbortSignalLike (not a DOM AbortSignal) to fetch", async () => {
    const listeners: (() => void)[] = [];
    const like = {
      aborted: false,
      addEventListener: (_type: "abort", listener: () => void) => listeners.push(listener),
      removeEventListener: () => {},
    };
    let seen: AbortSignal | undefined;
    const refresher = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      fetch: (_input, init) =>
        new Promise((_resolve, reject) => {
          seen = init!.signal!;
          seen.addEventListener("abort", () => reject(seen!.reason));
        }),
    });
    const outcome = refresher(like).catch((e: unknown) => e);
    // A bound that only stops a hang: vi.waitFor's default second is short on a busy machine.
    await vi.waitFor(() => expect(seen).toBeInstanceOf(AbortSignal), { timeout: 15_000 });
    like.aborted = true;
    listeners.forEach((listener) => listener());
    expect(((await outcome) as Error).name).toBe("AbortError");
  });

  it("refuses a token that is already expired instead of handing it to the SDK", async () => {
    const refresher = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      fetch: async () => tokenAnswer(Date.now() - 1_000),
    });
    await expect(refresher()).rejects.toMatchObject({ code: "TOKEN_EXPIRED" });
  });

  it("maps a gateway that cannot be reached to NETWORK_ERROR once its retries are spent", async () => {
    let calls = 0;
    const refresher = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      maxRetries: 0,
      fetch: async () => {
        calls++;
        throw new TypeError("fetch failed");
      },
    });
    await expect(refresher()).rejects.toMatchObject({ code: "NETWORK_ERROR" });
    expect(calls).toBe(1);
  });

  it("tries again after a network failure, a proxy's 503 and UPSTREAM_UNAVAILABLE, after 1, 2 and 4 s", async () => {
    // The SDK's proactive refresh does not reschedule itself after a failure: one blip must not
    // leave the app on its old token until it expires.
    vi.useFakeTimers({ now: Date.parse("2026-01-01T00:00:00Z") });
    const answers: (() => Response)[] = [
      () => {
        throw new TypeError("fetch failed");
      },
      () => new Response("<html>Service Unavailable</html>", { status: 503 }),
      () =>
        graphqlAnswer({
          errors: [{ message: "ACS is unavailable", extensions: { code: "UPSTREAM_UNAVAILABLE" } }],
          data: null,
        }),
      () => tokenAnswer(Date.now() + 3600_000),
    ];
    const calls: number[] = [];
    const refresher = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      fetch: async () => {
        calls.push(Date.now());
        return answers.shift()!();
      },
    });
    const result = refresher();
    await vi.advanceTimersByTimeAsync(6_999);
    expect(calls).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    await expect(result).resolves.toMatch(/\./);
    expect(calls.map((t) => t - calls[0]!)).toEqual([0, 1_000, 3_000, 7_000]);
  });

  it("does not try again what another try would not change", async () => {
    let calls = 0;
    const refresher = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      fetch: async () => {
        calls++;
        return new Response("Bad Request", { status: 400 });
      },
    });
    await expect(refresher()).rejects.toMatchObject({ code: "BAD_RESPONSE", status: 400 });
    expect(calls).toBe(1);
  });

  it("answers BAD_RESPONSE, not a TypeError, for a result without a usable token", async () => {
    for (const data of [{}, { issueMyToken: null }, { issueMyToken: { token: 5 } }]) {
      const refresher = createTokenRefresher({
        url: "http://gateway.test/graphql",
        scopes: ["VOIP"],
        fetch: async () => graphqlAnswer({ data }),
      });
      await expect(refresher()).rejects.toMatchObject({
        name: "GatewayClientError",
        code: "BAD_RESPONSE",
      });
    }
  });

  it("hands the app the gateway error's extensions (revokedAt, field, reason)", async () => {
    const refresher = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      fetch: async () =>
        graphqlAnswer({
          errors: [
            {
              message: "expiresInMinutes must be a whole number from 60 to 1440.",
              extensions: { code: "BAD_USER_INPUT", field: "expiresInMinutes" },
            },
          ],
          data: null,
        }),
    });
    const error = (await refresher().catch((e: unknown) => e)) as GatewayClientError;
    expect(error.code).toBe("BAD_USER_INPUT");
    expect(error.extensions).toEqual({ code: "BAD_USER_INPUT", field: "expiresInMinutes" });
  });

  it("rethrows the app's own getHeaders failure, and does not wait for a hung one after an abort", async () => {
    const signInNeeded = new Error("interaction_required");
    const failing = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      getHeaders: async () => {
        throw signInNeeded;
      },
      fetch: async () => tokenAnswer(Date.now() + 3600_000),
    });
    await expect(failing()).rejects.toBe(signInNeeded);

    let fetched = false;
    const hung = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      getHeaders: () => new Promise<Record<string, string>>(() => {}),
      fetch: async () => {
        fetched = true;
        return tokenAnswer(Date.now() + 3600_000);
      },
    });
    const controller = new AbortController();
    const outcome = hung(controller.signal).catch((e: unknown) => e);
    controller.abort(new DOMException("call ended", "AbortError"));
    expect(((await outcome) as Error).message).toBe("call ended");
    expect(fetched).toBe(false);

    // A call whose signal is already aborted does not run getHeaders at all (no sign-in popup,
    // no rejection left unhandled), and getHeaders is called as the options' method.
    let asked = 0;
    const client = createGatewayClient({
      url: "http://gateway.test/graphql",
      prefix: "Bearer ",
      getHeaders(this: { prefix: string }) {
        asked++;
        return { Authorization: `${this.prefix}x` };
      },
      fetch: async () => tokenAnswer(Date.now() + 3600_000),
    } as Parameters<typeof createGatewayClient>[0]);
    const aborted = AbortSignal.abort(new DOMException("gone", "AbortError"));
    await expect(client.request("Me", {}, { signal: aborted })).rejects.toMatchObject({
      message: "gone",
    });
    expect(asked).toBe(0);
    await client.request("Me", {});
    expect(asked).toBe(1);
  });

  it("takes its listener off the SDK's AbortSignalLike when a call is over", async () => {
    const listeners = new Set<() => void>();
    const like = {
      aborted: false,
      addEventListener: (_type: "abort", listener: () => void) => void listeners.add(listener),
      removeEventListener: (_type: "abort", listener: () => void) =>
        void listeners.delete(listener),
    };
    const refresher = createTokenRefresher({
      url: "http://gateway.test/graphql",
      scopes: ["VOIP"],
      fetch: async () => tokenAnswer(Date.now() + 3600_000),
    });
    for (let i = 0; i < 3; i++) {
      await refresher(like);
    }
    expect(listeners.size).toBe(0);
  });

  it("validates its options", () => {
    expect(() => createTokenRefresher({ url: "http://g/graphql", scopes: [] })).toThrow(/scopes/);
    expect(() =>
      // A typo in either spelling fails where it is written, naming what is accepted.
      createTokenRefresher({ url: "http://g/graphql", scopes: ["Voip" as "voip"] }),
    ).toThrow(
      /unknown scope "Voip": use one of chat, chat.join, chat.join.limited, voip, voip.join/,
    );
    expect(() =>
      createTokenRefresher({ url: "http://g/graphql", scopes: ["VOIP"], expiresInMinutes: 30 }),
    ).toThrow(/expiresInMinutes/);
    expect(() => createTokenRefresher({ url: "ftp://g/graphql", scopes: ["VOIP"] })).toThrow(/url/);
  });
});
