import { describe, expect, it } from "vitest";
import { wrapMethods } from "../src/wrap-methods.js";

interface Store {
  readonly label: string;
  get(key: string): Promise<string>;
  put(key: string, value: string): Promise<void>;
  close(): Promise<void>;
}

class MemoryStore implements Store {
  readonly label = "memory";
  readonly entries = new Map<string, string>();
  closed = false;

  async get(key: string): Promise<string> {
    const value = this.entries.get(key);
    if (value === undefined) {
      throw new Error(`no ${key}`);
    }
    return value;
  }

  async put(key: string, value: string): Promise<void> {
    this.entries.set(key, value);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

describe("wrapMethods", () => {
  it("runs every method through `around` with its name and arguments, bound to the target", async () => {
    const store = new MemoryStore();
    const calls: string[] = [];
    const wrapped = wrapMethods<Store>(store, async (name, call) => {
      calls.push(name);
      return call();
    });

    await wrapped.put("a", "1");
    await expect(wrapped.get("a")).resolves.toBe("1");
    expect(calls).toEqual(["put", "get"]);
    expect(store.entries.get("a")).toBe("1");
  });

  it("returns what `around` returns and lets it replace a failure", async () => {
    const wrapped = wrapMethods<Store>(new MemoryStore(), async (name, call) => {
      try {
        return await call();
      } catch (error) {
        throw new Error(`${name} failed`, { cause: error });
      }
    });

    await expect(wrapped.get("missing")).rejects.toThrow("get failed");
  });

  it("passes excepted methods and non-function members through", async () => {
    const store = new MemoryStore();
    const calls: string[] = [];
    const wrapped = wrapMethods<Store>(
      store,
      async (name, call) => {
        calls.push(name);
        return call();
      },
      { except: ["close"] },
    );

    await wrapped.close();
    expect(store.closed).toBe(true);
    expect(wrapped.label).toBe("memory");
    expect(calls).toEqual([]);
  });

  it("wraps an object literal's methods and reads its other members live", async () => {
    const target = {
      one: async () => 1,
      two: async (n: number) => n * 2,
      count: 3,
    };
    const names: string[] = [];
    const wrapped = wrapMethods(target, async (name, call) => {
      names.push(name);
      return call();
    });

    await expect(wrapped.one()).resolves.toBe(1);
    await expect(wrapped.two(4)).resolves.toBe(8);
    expect(names).toEqual(["one", "two"]);
    target.count = 4;
    expect(wrapped.count).toBe(4);
    expect(Object.keys(wrapped).sort()).toEqual(["count", "one", "two"]);
  });
});
