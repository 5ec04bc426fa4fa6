import { rateLimited } from "../errors.js";
import type { IdentityProvider, IssuedToken } from "../identity/identity-provider.js";

/**
 * What one request cost, counted where it happens (cache hits and misses in user-tokens.ts, ACS
 * calls by the budget) and read by the request's access log line. Carried by the actor rather
 * than an AsyncLocalStorage: async-context tracking put promise hooks on every await of every
 * request (about 7% of a cached token's CPU time).
 */
export interface Usage {
  cacheHits: number;
  cacheMisses: number;
  upstreamCalls: number;
}

/** Who an ACS call is made for: enough of a `Caller` to charge it. */
export interface Actor {
  /** `Caller.key`: issuer and subject, hashed. */
  key: string;
  isAdmin: boolean;
  /** The token's issuer, for logs (a `Caller` has it; scripts may not). */
  issuer?: string | undefined;
  /** The caller's `sub`, named in the directory's events as `admin:<subject>` for an admin's change. */
  subject?: string | undefined;
  /** `Caller.externalId`: the directory's external id of the caller's own identity (self-service). */
  externalId?: string | undefined;
  /** The request's counters, when the call is made for a request (scripts have none). */
  usage?: Usage | undefined;
}

/** What ACS calls a caller may still make; `createUpstreamBudget` implements it with limiters. */
export interface UpstreamBudget {
  /** Counts one ACS call for `actor`; throws `rate-limited` (with `retryAfterSeconds`) when spent. */
  charge(actor: Actor): Promise<void>;
}

/** The `RateLimiter` shape the budget needs (auth/rate-limiter.ts). */
interface Limiter {
  consume(key: string): Promise<{ allowed: boolean; retryAfterSeconds: number }>;
}

/**
 * End users and admins are counted apart: an end user's budget protects the resource-wide ACS
 * limits from one user (ACS allows, per 30 s and resource, 500 revokes and 1,000 issues), while a
 * backend minting for all its users acts as an admin and is unlimited unless configured.
 */
export function createUpstreamBudget(options: {
  endUser: Limiter;
  /** Undefined: admins are not limited. */
  admin?: Limiter | undefined;
  /** A refusal, by caller kind (for metrics). */
  onRefused?: (caller: "user" | "admin") => void;
}): UpstreamBudget {
  return {
    async charge(actor) {
      // Every ACS call made for a caller, charged or not (for the request's access log line).
      if (actor.usage) {
        actor.usage.upstreamCalls++;
      }
      const limiter = actor.isAdmin ? options.admin : options.endUser;
      if (!limiter) {
        return;
      }
      const verdict = await limiter.consume(actor.key);
      if (!verdict.allowed) {
        options.onRefused?.(actor.isAdmin ? "admin" : "user");
        throw rateLimited(
          "Too many Azure Communication Services calls for this caller. Try again later.",
          verdict.retryAfterSeconds,
        );
      }
    },
  };
}

/**
 * `T`'s methods with the acting caller as first argument: what charging a caller's budget before
 * each call turns an interface into.
 */
type Metered<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => Promise<infer R>
    ? (actor: Actor, ...args: A) => Promise<R>
    : never;
};

/**
 * `IdentityProvider` with the acting caller as first argument, charging its budget right before
 * each ACS call (never for a cache lookup: a hit calls nothing here). The token services hold only
 * this, so a new operation cannot reach ACS uncharged by forgetting a call; the one deliberate
 * exception, `uncharged`, is named as such. Derived from `IdentityProvider` method by method, so an
 * operation added to the provider is metered here without being listed.
 *
 * One caller's identical `issueToken`s asked while the first is still being charged (not yet sent
 * to ACS) share that one call and its one charge. That is what keeps a burst of requests whose
 * cache read failed (Redis paused, or a read that outlived its 250 ms timeout on a busy event loop:
 * each then mints on its own, joining no cache flight) from spending the caller's whole budget on
 * copies of one token. It is safe where joining a cache flight is not: the shared call reaches ACS
 * after every request that shares it began, so its token is as fresh as each one's own call would
 * be (a revoke confirmed before any of them began is older). Once sent, a call is shared no more.
 */
export type MeteredUpstream = Metered<IdentityProvider> & {
  /** Clean-up the gateway does on its own account (deleting an identity that lost a mapping race). */
  uncharged: Pick<IdentityProvider, "deleteUser">;
};

type Method = (...args: unknown[]) => Promise<unknown>;

/** The names of `target`'s methods, its own and its prototype chain's (a class instance too). */
function methodNames(target: object): string[] {
  const names = new Set<string>();
  for (
    let layer: object | null = target;
    layer !== null && layer !== Object.prototype;
    layer = Object.getPrototypeOf(layer) as object | null
  ) {
    for (const name of Object.getOwnPropertyNames(layer)) {
      if (
        name !== "constructor" &&
        typeof Object.getOwnPropertyDescriptor(layer, name)?.value === "function"
      ) {
        names.add(name);
      }
    }
  }
  return [...names];
}

export function meterUpstream(identity: IdentityProvider, budget: UpstreamBudget): MeteredUpstream {
  const provider = identity as unknown as Record<string, Method>;
  const metered: Record<string, unknown> = {};
  for (const name of methodNames(identity)) {
    metered[name] = async (actor: Actor, ...args: unknown[]) => {
      await budget.charge(actor);
      return provider[name]!.apply(identity, args);
    };
  }

  /** Issues still being charged (not yet sent to ACS), by caller and token; see above. */
  const unsent = new Map<string, Promise<IssuedToken>>();
  const issueToken: MeteredUpstream["issueToken"] = (actor, userId, scopes, expiresInMinutes) => {
    const key = `${actor.key}\u0000${userId}\u0000${scopes.join(" ")}\u0000${expiresInMinutes ?? ""}`;
    const waiting = unsent.get(key);
    if (waiting) {
      return waiting;
    }
    const call = (async () => {
      try {
        await budget.charge(actor);
      } finally {
        // Charged (or refused): from here on the call is being sent, and nobody may join it.
        unsent.delete(key);
      }
      return identity.issueToken(userId, scopes, expiresInMinutes);
    })();
    unsent.set(key, call);
    return call;
  };
  metered.issueToken = issueToken;
  metered.uncharged = { deleteUser: (userId: string) => identity.deleteUser(userId) };
  return metered as MeteredUpstream;
}
