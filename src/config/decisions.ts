/**
 * The choices several concerns depend on, each made once, here, from which settings are set
 * (never from their values, which are the concerns' to check). Each concern's schema is then the
 * branch for these choices: a union whose discriminator is this, not one setting's value.
 */
export interface Decisions {
  /** `NODE_ENV=production` exactly: the insecure defaults are refused. */
  production: boolean;
  /**
   * Where tokens come from. `embedded-emulator`: neither ACS setting, outside production; the
   * gateway starts the bundled emulator in-process, and only then reads its settings. In
   * production the emulator is no option: without ACS_ENDPOINT a connection string is required.
   */
  upstream: "connection-string" | "entra" | "embedded-emulator";
  /** Where the token cache lives (the mappings are in the database: app/directory.ts). */
  redis: "memory" | "single" | "cluster";
}

export function decide(settings: Readonly<Record<string, string | undefined>>): Decisions {
  const set = (name: string) => settings[name] !== undefined;
  // A misspelt NODE_ENV is a problem of its own (the environment concern reports it); the rest
  // is then checked as development, which adds no problem of its own.
  const production = settings.NODE_ENV === "production";
  return {
    production,
    // A connection string decides even beside ACS_ENDPOINT: that branch then reports the pair.
    upstream: set("COMMUNICATION_SERVICES_CONNECTION_STRING")
      ? "connection-string"
      : set("ACS_ENDPOINT")
        ? "entra"
        : production
          ? "connection-string"
          : "embedded-emulator",
    // Likewise REDIS_URL beside REDIS_CLUSTER_NODES.
    redis: set("REDIS_URL") ? "single" : set("REDIS_CLUSTER_NODES") ? "cluster" : "memory",
  };
}
