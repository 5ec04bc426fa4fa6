import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadConfig } from "../../src/config.js";
import { EMULATOR_WELL_KNOWN_ACCESS_KEY } from "../../packages/emulator/src/options.js";
import { commandExists, settingNames } from "./settings.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);
const hasCompose = commandExists("docker-compose");

interface ComposeService {
  image?: string;
  build?: unknown;
  pull_policy?: string;
  profiles?: string[];
  environment?: Record<string, string | null>;
  healthcheck?: { test: string[] };
  ports?: (string | { published: string | number; target: number })[];
}

// An empty env file, so a developer's own .env never changes what these tests see.
const scratch = mkdtempSync(join(tmpdir(), "acsgw-compose-"));
const emptyEnvFile = join(scratch, "empty.env");
writeFileSync(emptyEnvFile, "");
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** `docker-compose config` (Debian's docker-compose 1.29: validates and interpolates, no engine). */
async function composeConfig(
  env: Record<string, string>,
  envFile = emptyEnvFile,
): Promise<Record<string, ComposeService>> {
  const { stdout } = await run(
    "docker-compose",
    ["-f", "docker-compose.yml", "--env-file", envFile, "config"],
    {
      cwd: ROOT,
      // Only PATH from this process: the CI's own REDIS_URL or NODE_ENV must not leak in.
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: scratch, ...env },
    },
  );
  return (parse(stdout) as { services: Record<string, ComposeService> }).services;
}

/** The environment as the container would get it (compose prints empty values as ''). */
function environmentOf(service: ComposeService | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(service?.environment ?? {})) {
    env[name] = value ?? "";
  }
  return env;
}

describe.skipIf(!hasCompose)(
  hasCompose
    ? "docker-compose.yml (docker-compose config)"
    : "docker-compose.yml: skipped, the docker-compose binary is not installed",
  () => {
    it("passes every setting from the environment through to the gateway", async () => {
      const names = settingNames(ROOT);
      // Fixed inside the container: the port mapping and the image's interface are the knobs.
      // RATE_LIMIT_TOKENS_PER_MINUTE is retired: config.ts names it only to refuse it.
      const fixed = new Set(["PORT", "HOST", "RATE_LIMIT_TOKENS_PER_MINUTE"]);
      const env = Object.fromEntries(
        names
          .filter((name) => !fixed.has(name))
          .map((name) => [name, `from-env-${name.toLowerCase()}`]),
      );
      const services = await composeConfig({ ...env, GATEWAY_PORT: "4100" });
      const gateway = environmentOf(services.gateway);

      const missing = Object.keys(env).filter((name) => gateway[name] !== env[name]);
      expect(missing, "settings that do not reach the gateway").toEqual([]);
      expect(gateway.PORT).toBe("4000");
      expect(gateway.HOST).toBe("0.0.0.0");
      expect(JSON.stringify(services.gateway!.ports)).toContain("4100");
      expect(JSON.stringify(services.gateway!.ports)).toContain("127.0.0.1");
    });

    it("knows the settings that must reach the container, from src/config.ts and docs/configuration.md", () => {
      const names = settingNames(ROOT);
      for (const name of [
        "RATE_LIMIT_ACS_CALLS_PER_MINUTE",
        "MAX_QUERY_DEPTH",
        "MAX_ALIASES",
        "MAX_ROOT_FIELDS",
        "MAX_BODY_BYTES",
        "MEMORY_CACHE_MAX_ENTRIES",
        "REDIS_CLUSTER_NODES",
        "ACS_EMULATOR_LATENCY_MS",
        "ACS_EMULATOR_THROTTLE",
        "SHUTDOWN_DRAIN_DELAY_MS",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
      ]) {
        expect(names).toContain(name);
      }
    });

    it("with nothing set, gives the gateway a configuration it accepts: development, Redis, embedded emulator", async () => {
      const services = await composeConfig({});
      const config = loadConfig(environmentOf(services.gateway));
      expect(config.nodeEnv).toBe("development");
      expect(config.redis).toEqual({ mode: "single", url: "redis://redis:6379" });
      expect(config.acs).toBeUndefined();
      expect(config.port).toBe(4000);
      expect(config.limits.acsCallsPerWindow).toBe(30); // the gateway's default, not compose's
    });

    it("lets REDIS_URL be emptied for Redis Cluster", async () => {
      const services = await composeConfig({
        REDIS_URL: "",
        REDIS_CLUSTER_NODES: "r1:7000,r2:7001",
      });
      const config = loadConfig(environmentOf(services.gateway));
      expect(config.redis).toEqual({
        mode: "cluster",
        nodes: [
          { host: "r1", port: 7000 },
          { host: "r2", port: 7001 },
        ],
      });
    });

    it("offline: the gateway reaches the emulator container by service name, with the settings it needs", async () => {
      const envFile = join(ROOT, "deploy/compose/offline.env");
      expect(readFileSync(envFile, "utf8")).toMatch(/^COMPOSE_PROFILES=offline$/m);
      const services = await composeConfig({}, envFile);
      const emulator = services["acs-emulator"]!;
      expect(emulator.profiles).toEqual(["offline"]);
      const emulatorEnv = environmentOf(emulator);
      expect(emulatorEnv.ACS_EMULATOR_HOST).toBe("0.0.0.0");

      const config = loadConfig(environmentOf(services.gateway));
      expect(config.acs).toBeDefined();
      const endpoint = new URL(config.acs!.endpoint);
      expect(endpoint.hostname).toBe("acs-emulator");
      expect(endpoint.port).toBe(emulatorEnv.ACS_EMULATOR_PORT);
      expect(config.acs!.accessKey).toBe(EMULATOR_WELL_KNOWN_ACCESS_KEY);
      expect(config.acsAllowInsecure).toBe(true);
    });

    it("builds the image once and runs it for both the gateway and the emulator", async () => {
      const services = await composeConfig({});
      const built = Object.entries(services).filter(([, service]) => service.build !== undefined);
      expect(built.map(([name]) => name)).toEqual(["gateway"]);
      expect(services["acs-emulator"]!.image).toBe(services.gateway!.image);
      expect(services["acs-emulator"]!.pull_policy).toBe("never");
    });

    it("checks health on /readyz in compose and /healthz in the image", async () => {
      const services = await composeConfig({});
      expect(services.gateway!.healthcheck!.test.join(" ")).toContain("/readyz");
      const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
      expect(dockerfile).toMatch(/HEALTHCHECK[\s\S]*\/healthz/);
    });
  },
);
