import { describe, expect, it } from "vitest";
import { createBearerVerifier } from "../../src/app/bearer-verifier.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";

function warningsFor(env: Record<string, string>): string[] {
  const lines: { level: number; msg: string }[] = [];
  const logger = createLogger(
    { level: "info" },
    { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) },
  );
  createBearerVerifier(loadConfig(env), logger);
  return lines.filter((line) => line.level === 40).map((line) => line.msg);
}

const JWT = {
  AUTH_MODE: "jwt",
  AUTH_JWKS_URL: "https://issuer.example/keys",
  AUTH_ISSUER: "https://issuer.example/",
  AUTH_AUDIENCE: "api://gateway",
};

describe("the bearer verifier's start", () => {
  it("warns when the external id comes from a claim users may set themselves", () => {
    expect(warningsFor({ ...JWT, AUTH_EXTERNAL_ID_CLAIM: "email" })).toEqual([
      expect.stringMatching(/^AUTH_EXTERNAL_ID_CLAIM=email: .*prefer sub or oid/),
    ]);
    expect(warningsFor({ ...JWT, AUTH_EXTERNAL_ID_CLAIM: "oid" })).toEqual([]);
    expect(warningsFor(JWT)).toEqual([]);
  });

  it("warns that AUTH_MODE=none makes every caller an admin", () => {
    expect(warningsFor({})).toEqual([expect.stringMatching(/^AUTH_MODE=none: every caller/)]);
  });
});
