/**
 * Freezes `value` and every plain object and array inside it, so no part of the configuration
 * can change after start, whatever fields it gains. Anything else (a Buffer, which cannot be
 * frozen, or a class instance) is left as it is.
 */
export function deepFreeze<T>(value: T): Readonly<T> {
  if (
    Array.isArray(value) ||
    (typeof value === "object" &&
      value !== null &&
      Object.getPrototypeOf(value) === Object.prototype)
  ) {
    for (const inner of Object.values(value)) {
      deepFreeze(inner);
    }
    Object.freeze(value);
  }
  return value;
}
