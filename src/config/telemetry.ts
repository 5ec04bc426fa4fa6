import { z } from "zod";
import type { Config } from "../config.js";
import { TracingConfigError, tracingSettingsFromEnv } from "../telemetry/tracing.js";

/**
 * OTLP trace export from the standard `OTEL_*` variables, through the tracing module's reader
 * (from the whole environment: OpenTelemetry owns those names).
 */
export const telemetry = z
  .custom<Record<string, string | undefined>>()
  .transform((env, ctx): Pick<Config, "tracing"> => {
    try {
      return { tracing: tracingSettingsFromEnv(env) };
    } catch (error) {
      if (!(error instanceof TracingConfigError)) {
        throw error;
      }
      // Its message names the variable already.
      ctx.addIssue(error.message);
      return z.NEVER;
    }
  });
