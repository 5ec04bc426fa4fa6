import { z } from "zod";
import type { Config } from "../config.js";
import type { Decisions } from "./decisions.js";
import { required, settings } from "./fields.js";
import { tlsOrLoopback } from "./url.js";

type Auth = Pick<Config, "auth">;

const forJwt = (value: z.ZodType<string, string> = z.string()) =>
  required("required when AUTH_MODE=jwt", value);

/** AUTH_MODE and what each mode requires. */
export const auth = ({ production }: Decisions) =>
  z.discriminatedUnion(
    "AUTH_MODE",
    [
      settings({ AUTH_MODE: z.literal("none").optional() })
        // Every caller is the admin `anonymous`: for a development machine only.
        .refine(() => !production, {
          path: ["AUTH_MODE"],
          message:
            "none makes every caller an admin; it is refused when NODE_ENV=production (use jwt)",
        })
        .transform((): Auth => ({ auth: { mode: "none" } })),
      settings({
        AUTH_MODE: z.literal("jwt"),
        // The signing keys decide who is who: fetched over TLS unless the issuer is local.
        AUTH_JWKS_URL: forJwt(tlsOrLoopback),
        AUTH_ISSUER: forJwt(),
        AUTH_AUDIENCE: forJwt(),
      }).transform((s): Auth => ({
        auth: {
          mode: "jwt",
          jwksUrl: s.AUTH_JWKS_URL,
          issuer: s.AUTH_ISSUER,
          audience: s.AUTH_AUDIENCE,
        },
      })),
    ],
    { error: "must be none or jwt" },
  );

/** What callers may do beyond their own user, and the router's shared secret. */
export const callers = settings({
  AUTH_ADMIN_ROLE: z.string().default("acs.admin"),
  ROUTER_SECRET: z.string().min(16, "must be at least 16 characters").optional(),
}).transform((s): Pick<Config, "adminRole" | "routerSecret"> => ({
  adminRole: s.AUTH_ADMIN_ROLE,
  routerSecret: s.ROUTER_SECRET,
}));
