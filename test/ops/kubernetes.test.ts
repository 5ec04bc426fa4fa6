import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { loadConfig } from "../../src/config.js";
import { commandExists, settingNames } from "./settings.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);
const hasKubectl = commandExists("kubectl");

type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: any };
  [key: string]: any;
};

/** `kubectl kustomize DIR` (client side only: no cluster needed), parsed. */
async function render(dir: string): Promise<Manifest[]> {
  const { stdout } = await run("kubectl", ["kustomize", dir], { cwd: ROOT });
  return parseAllDocuments(stdout).map((doc) => doc.toJS() as Manifest);
}

function one(manifests: Manifest[], kind: string): Manifest {
  const found = manifests.filter((m) => m.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0]!;
}

describe.skipIf(!hasKubectl)(
  hasKubectl
    ? "deploy/kubernetes/base (kubectl kustomize)"
    : "deploy/kubernetes/base: skipped, the kubectl binary is not installed",
  () => {
    let manifests: Manifest[];
    let deployment: Manifest;
    let container: any;

    beforeAll(async () => {
      manifests = await render("deploy/kubernetes/base");
      deployment = one(manifests, "Deployment");
      container = deployment.spec.template.spec.containers[0];
    });

    it("renders a Deployment, Service, ConfigMap, ServiceAccount, PodDisruptionBudget and HPA", () => {
      expect(manifests.map((m) => m.kind).sort()).toEqual([
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
      ]);
    });

    it("probes liveness and start-up on /healthz and readiness on /readyz, on the container's port", () => {
      const port = container.ports.find((p: any) => p.name === "http");
      expect(port.containerPort).toBe(4000);
      expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "http" });
      expect(container.startupProbe.httpGet).toEqual({ path: "/healthz", port: "http" });
      expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "http" });
      // Start-up gets a minute before liveness takes over.
      expect(
        container.startupProbe.periodSeconds * container.startupProbe.failureThreshold,
      ).toBeGreaterThanOrEqual(30);
      const env = Object.fromEntries(container.env.map((e: any) => [e.name, e.value]));
      expect(env.PORT).toBe(String(port.containerPort));
    });

    it("runs as non-root on a read-only root file system with no privileges", () => {
      const pod = deployment.spec.template.spec;
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
      expect(pod.securityContext.seccompProfile.type).toBe("RuntimeDefault");
      expect(pod.automountServiceAccountToken).toBe(false);
      expect(container.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ["ALL"] },
      });
      // The one writable path is a bounded emptyDir on /tmp.
      expect(container.volumeMounts).toEqual([{ name: "tmp", mountPath: "/tmp" }]);
      expect(pod.volumes[0].emptyDir.sizeLimit).toBeDefined();
    });

    it("waits in preStop before SIGTERM and leaves room to drain before SIGKILL", () => {
      const pod = deployment.spec.template.spec;
      const command: string[] = container.lifecycle.preStop.exec.command;
      expect(command[0]).toBe("sleep");
      const preStopSeconds = Number(command[1]);
      expect(preStopSeconds).toBeGreaterThan(0);
      const config = one(manifests, "ConfigMap").data;
      const drainSeconds = Number(config.SHUTDOWN_DRAIN_DELAY_MS ?? 0) / 1000;
      // The gateway gives in-flight requests and its clients up to 10 s after the drain delay.
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(preStopSeconds + drainSeconds + 10);
    });

    it("requests resources and sets a memory limit", () => {
      expect(container.resources.requests.cpu).toBeDefined();
      expect(container.resources.requests.memory).toBeDefined();
      expect(container.resources.limits.memory).toBeDefined();
    });

    it("takes settings from the generated ConfigMap and a Secret, naming only settings that exist", () => {
      const configMap = one(manifests, "ConfigMap");
      const refs = container.envFrom;
      expect(refs[0].configMapRef.name).toBe(configMap.metadata.name);
      expect(configMap.metadata.name).toMatch(/^acs-identity-gateway-[a-z0-9]+$/); // content hash
      expect(refs[1].secretRef.name).toBe("acs-identity-gateway");
      const known = new Set(settingNames(ROOT));
      expect(Object.keys(configMap.data).filter((name) => !known.has(name))).toEqual([]);
      expect(configMap.data.NODE_ENV).toBe("production");
      // Several pods share one PostgreSQL: DATABASE_URL must be in the Secret (not optional, so a
      // pod without it does not start), and no pod falls back to an embedded database.
      expect(container.env.find((e: any) => e.name === "DATABASE_URL")).toEqual({
        name: "DATABASE_URL",
        valueFrom: { secretKeyRef: { name: "acs-identity-gateway", key: "DATABASE_URL" } },
      });
      expect(configMap.data.DIRECTORY_DATA_DIR).toBeUndefined();
    });

    it("selects its own pods from the Service, the PodDisruptionBudget and the autoscaler", () => {
      const podLabels = deployment.spec.template.metadata.labels;
      const matches = (selector: Record<string, string>) =>
        Object.entries(selector).every(([key, value]) => podLabels[key] === value);
      expect(deployment.spec.replicas).toBeUndefined(); // the HPA owns the count
      expect(matches(deployment.spec.selector.matchLabels)).toBe(true);
      const service = one(manifests, "Service");
      expect(matches(service.spec.selector)).toBe(true);
      expect(service.spec.ports[0].targetPort).toBe("http");
      const pdb = one(manifests, "PodDisruptionBudget");
      expect(matches(pdb.spec.selector.matchLabels)).toBe(true);
      const hpa = one(manifests, "HorizontalPodAutoscaler");
      expect(hpa.spec.scaleTargetRef).toMatchObject({
        kind: "Deployment",
        name: deployment.metadata.name,
      });
      expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
      expect(deployment.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
    });
  },
);

describe.skipIf(!hasKubectl)(
  hasKubectl
    ? "deploy/kubernetes/overlays/example"
    : "deploy/kubernetes/overlays/example: skipped, the kubectl binary is not installed",
  () => {
    it("renders a configuration the gateway accepts in production once the Secret is there", async () => {
      const manifests = await render("deploy/kubernetes/overlays/example");
      const deployment = one(manifests, "Deployment");
      const container = deployment.spec.template.spec.containers[0];
      expect(container.image).toBe("registry.example.com/acs-identity-gateway:0.1.0");
      const configMap = one(manifests, "ConfigMap");
      expect(container.envFrom[0].configMapRef.name).toBe(configMap.metadata.name);
      const env = {
        ...configMap.data,
        ...Object.fromEntries(container.env.map((e: any) => [e.name, e.value])),
        // What the Secret would hold.
        COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=https://example.communication.azure.com/;accesskey=${Buffer.alloc(32, 7).toString("base64")}`,
        REDIS_URL: "rediss://:password@redis.example:6380",
        DATABASE_URL: "postgres://gateway:password@postgres.example:5432/gateway",
      };
      const config = loadConfig(env);
      expect(config.production).toBe(true);
      expect(config.auth.mode).toBe("jwt");
      expect(config.port).toBe(4000);
      expect(config.databaseUrl).toBe(env.DATABASE_URL);
    });
  },
);
