/**
 * Wraps every method of `target` in the same `around`, so a decorator (a guard, an observer, a
 * span) is written once and covers methods added to the interface later without being re-listed.
 *
 * `around` gets the method's name and `call`, which runs the method on `target` (its `this`) with
 * the caller's arguments; what `around` returns is what the caller gets. Methods are found on the
 * object and its prototype chain (a class instance works as well as an object literal). Excepted
 * methods (e.g. `close`) are passed through bound to `target`; other members are passed through as
 * live getters. Only string-named members are carried over.
 */
export function wrapMethods<T extends object>(
  target: T,
  around: (name: keyof T & string, call: () => Promise<unknown>) => Promise<unknown>,
  options: { except?: readonly (keyof T & string)[] } = {},
): T {
  const except = new Set<string>(options.except ?? []);
  const wrapped: Record<string, unknown> = {};
  for (
    let layer: object | null = target;
    layer !== null && layer !== Object.prototype;
    layer = Object.getPrototypeOf(layer) as object | null
  ) {
    for (const name of Object.getOwnPropertyNames(layer)) {
      if (name === "constructor" || Object.hasOwn(wrapped, name)) {
        continue; // an own member shadows the prototype's
      }
      const member = Object.getOwnPropertyDescriptor(layer, name)?.value as unknown;
      const key = name as keyof T & string;
      if (typeof member !== "function") {
        Object.defineProperty(wrapped, name, { get: () => target[key], enumerable: true });
      } else if (except.has(name)) {
        wrapped[name] = (member as (...args: unknown[]) => unknown).bind(target);
      } else {
        const method = member as (...args: unknown[]) => Promise<unknown>;
        wrapped[name] = (...args: unknown[]) => around(key, () => method.apply(target, args));
      }
    }
  }
  return wrapped as T;
}
