import { z } from "zod";
import type { SettingName } from "../config.js";

/**
 * Parsers for one setting's value, shared by the concerns (src/config/*.ts). They receive the
 * settings after src/config.ts has turned empty values into `undefined`, so none of them has to
 * handle `FOO=` itself.
 */

/**
 * A concern's settings: `z.object`, refusing at compile time a name missing from src/config.ts's
 * list. The concerns receive only the listed settings, so a name missing there would always read
 * as unset, and the list is what the documentation is checked against.
 */
export const settings = <S extends Record<string, z.ZodType>>(
  shape: S & { [K in Exclude<keyof S, SettingName>]: never },
) => z.object(shape);

/** Standard base64 (what `openssl rand -base64` and the Azure portal print). */
export const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** A switch: `true` or `false`, or `1` or `0`; unset: `fallback`. */
export const bool = (fallback: boolean) =>
  z
    .enum(["true", "false", "1", "0"], { message: "must be true or false" })
    .optional()
    .transform((v) => (v === undefined ? fallback : v === "true" || v === "1"));

/** A whole number within `min`..`max`; unset: `fallback`. */
export const int = (fallback: number, min: number, max: number) =>
  z.coerce
    .number({ error: "must be a whole number" })
    .int({ error: "must be a whole number" })
    .min(min, { error: `must be from ${min} to ${max}` })
    .max(max, { error: `must be from ${min} to ${max}` })
    .default(fallback);

/**
 * A setting another one makes mandatory: `problem` says which (`required when AUTH_MODE=jwt`).
 * Piped into `value` for what it may hold once set.
 */
export const required = <T extends z.ZodType<unknown, string>>(problem: string, value: T) =>
  z.string({ error: problem }).pipe(value);

/** A setting that must stay unset, in a branch that excludes it or because it was retired. */
export const unset = (problem: string) => z.undefined({ error: problem }).optional();

/**
 * Options for a rule between settings (`refine`/`superRefine` on a concern): it runs once the
 * settings it reads have parsed, whatever else failed. Zod's default skips every rule of an object
 * as soon as any of its settings failed, which would let one bad value hide the rule's problem
 * until the next start.
 */
export const whenParsed = (...names: string[]) => ({
  when: (payload: z.core.ParsePayload) =>
    !payload.issues.some((issue) => names.includes(String(issue.path?.[0]))),
});

/**
 * Adapts a parser in the policy modules' convention (the value, or a problem string) to zod, so
 * its problem joins the others under the setting's name.
 */
export const checkedBy = <T>(parse: (value: string | undefined) => T | string) =>
  z
    .string()
    .optional()
    .transform((value, ctx): T => {
      const result = parse(value);
      if (typeof result === "string") {
        ctx.addIssue(result);
        return z.NEVER;
      }
      return result;
    });

/** A concern whose settings do not apply here: its slice of the configuration, nothing read. */
export const ignored = <T>(slice: T) => z.unknown().transform((): T => slice);
