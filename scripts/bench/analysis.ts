/** Reading a run's CPU profile and V8 garbage-collection trace into report tables. */
import type { LoadResult } from "../../bench/load.js";
import { ROOT } from "./params.js";
import { f0, f1, f2 } from "./report.js";

export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Self time by function and by area (package, gateway module, Node internals) from a .cpuprofile. */
export function summariseProfile(profile: CpuProfile, lastMs: number, top = 15): string {
  // Only the samples of the last `lastMs` before the profile ended (the measured load and the
  // shutdown right after it): start-up and warm-up would otherwise show module compilation.
  const from = profile.endTime - lastMs * 1000;
  let at = profile.startTime;
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) {
      parentOf.set(child, node.id);
    }
  }
  const label = (frame: CpuProfile["nodes"][number]["callFrame"]) => {
    const url = frame.url.replace(/^file:\/\//, "").replace(ROOT, "");
    const where = url ? `${url.replace(/^.*node_modules\//, "")}:${frame.lineNumber + 1}` : "";
    return `${frame.functionName || "(anonymous)"}${where ? ` ${where}` : ""}`;
  };
  /** Native frames say nothing of who called them: name the nearest frame above outside Node. */
  const nativeByCaller = new Map<string, number>();
  const selfByFunction = new Map<string, number>();
  const selfByArea = new Map<string, number>();
  let total = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at < from) {
      return;
    }
    const frame = byId.get(id)!;
    if (frame.functionName === "(idle)") {
      idle += delta;
      return;
    }
    total += delta;
    const url = frame.url.replace(/^file:\/\//, "").replace(ROOT, "");
    const name = label(frame);
    selfByFunction.set(name, (selfByFunction.get(name) ?? 0) + delta);
    if (url === "" && !frame.functionName.startsWith("(")) {
      let up = parentOf.get(id);
      while (up !== undefined && /^(node:|$)/.test(byId.get(up)!.url)) {
        up = parentOf.get(up);
      }
      const caller = up === undefined ? "(root)" : label(byId.get(up)!);
      const key = `${frame.functionName} <- ${caller}`;
      nativeByCaller.set(key, (nativeByCaller.get(key) ?? 0) + delta);
    }
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
    const area = pkg
      ? pkg
      : url.startsWith("dist/")
        ? url.replace(/^dist\//, "").replace(/\.js$/, ".ts")
        : url.startsWith("node:")
          ? "node: internals"
          : url === ""
            ? frame.functionName.startsWith("(")
              ? frame.functionName
              : "native (V8 builtins, crypto, syscalls)"
            : url;
    selfByArea.set(area, (selfByArea.get(area) ?? 0) + delta);
  });
  const rows = (map: Map<string, number>, count = top) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(
        ([name, us]) =>
          `| ${((us / total) * 100).toFixed(1)}% | \`${name.replaceAll("|", "\\|")}\` |`,
      )
      .join("\n");
  const busy = (total / (total + idle)) * 100;
  return [
    `The gateway's main thread was busy ${busy.toFixed(0)}% of the profiled time. Self time, as a share of the busy time:`,
    "",
    "| self | area (package, gateway module, or Node) |",
    "| ---: | --- |",
    rows(selfByArea),
    "",
    "| self | function |",
    "| ---: | --- |",
    rows(selfByFunction),
    "",
    "| self | native function <- nearest caller outside Node's internals |",
    "| ---: | --- |",
    rows(nativeByCaller, 10),
  ].join("\n");
}

/**
 * A row of the pause table from the `--trace-gc-nvp` lines during one load run. Scavenges
 * (`gc=s`): how much the server allocated per request, how often and how long it stopped, and
 * how much survived each. Mark-compacts (`gc=mc`, the full collections of the old generation that
 * whatever survived two scavenges fills): how often, and each one's main-thread time, its final
 * pause plus the incremental marking steps spread over the requests before it.
 */
export function pauseRow(name: string, lines: string[], result: LoadResult): string {
  const field = (line: string, key: string) =>
    Number(new RegExp(` ${key.replaceAll(".", "\\.")}=([\\d.]+)`).exec(line)?.[1] ?? NaN);
  const scavenges = lines.filter((line) => line.includes(" gc=s "));
  const fullGcs = lines.filter((line) => line.includes(" gc=mc "));
  const sum = (of: string[], key: string) =>
    of.reduce((total, line) => total + field(line, key), 0);
  const mean = (of: string[], key: string) => (of.length === 0 ? NaN : sum(of, key) / of.length);
  const perScavenge = (key: string) => mean(scavenges, key);
  const fullGcMs =
    fullGcs.length === 0 ? "-" : f1(mean(fullGcs, "pause") + mean(fullGcs, "incremental"));
  return `| ${name} | ${f0(result.rps)} | ${f2(result.p99)} | ${f1(sum(scavenges, "allocated") / 1024 / result.requests)} | ${f1((1000 * scavenges.length) / result.requests)} | ${f2(perScavenge("pause"))} | ${f2(perScavenge("heap.external_weak_global_handles"))} | ${f0((perScavenge("new_space_survived") + perScavenge("promoted")) / 1024)} | ${f0(perScavenge("promoted") / 1024)} | ${f1((10_000 * fullGcs.length) / result.requests)} | ${fullGcMs} |`;
}
