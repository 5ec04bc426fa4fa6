import { Writable } from "node:stream";
import { describe, expect, it, vi } from "vitest";
import { createLineWriter, createLogger, isoTime } from "../src/logger.js";

/** A pino destination keeping each written line. */
function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString("utf8"));
      done();
    },
  });
  return { lines, stream };
}

describe("isoTime", () => {
  it("writes pino's isoTime member, following the clock at millisecond precision", () => {
    vi.useFakeTimers({ now: Date.parse("2026-12-05T21:45:40.123Z"), toFake: ["Date"] });
    try {
      expect(isoTime()).toBe(',"time":"2026-12-05T21:45:40.123Z"');
      expect(isoTime()).toBe(',"time":"2026-12-05T21:45:40.123Z"');
      vi.setSystemTime(Date.parse("2026-12-05T21:45:40.124Z"));
      expect(isoTime()).toBe(',"time":"2026-12-05T21:45:40.124Z"');
      vi.setSystemTime(Date.parse("2026-12-06T00:00:00.000Z"));
      expect(isoTime()).toBe(',"time":"2026-12-06T00:00:00.000Z"');
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("createLineWriter", () => {
  it("writes what pino writes for the same fields, to the same destination", () => {
    const { lines, stream } = capture();
    const logger = createLogger({ level: "info", name: "gw" }, stream).child({ component: "x" });
    const fields = {
      reqId: "r-1",
      operation: 'with "quotes" \\ and\nnewline',
      fields: ["issueToken"],
      ms: 1.5,
      cache: { hits: 1, misses: 0 },
      caller: { iss: "https://issuer/é", sub: "abc" },
    };
    logger.child({ component: "access" }).info(fields, "graphql request");
    const writer = createLineWriter(logger, { component: "access" });
    writer.info(JSON.stringify(fields).slice(1, -1), "graphql request");
    writer.info("", "empty");

    expect(lines).toHaveLength(3);
    for (const line of lines) {
      expect(line.endsWith("}\n")).toBe(true);
    }
    const [viaPino, viaWriter, empty] = lines.map(
      (line) => JSON.parse(line) as Record<string, unknown>,
    );
    expect(viaWriter!.time).toEqual(expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/));
    // pino writes a binding repeated by a child twice, and the later wins when parsed; the
    // writer writes it once, with that value. Parsed, the lines are equal but for the time.
    expect({ ...viaWriter, time: undefined }).toEqual({ ...viaPino, time: undefined });
    expect(Object.keys(viaWriter!)).toEqual(Object.keys(viaPino!));
    expect(empty).toMatchObject({ level: 30, name: "gw", component: "access", msg: "empty" });
  });

  it("is disabled below info, like the logger it writes for", () => {
    const { stream } = capture();
    expect(createLineWriter(createLogger({ level: "warn" }, stream), {}).enabled).toBe(false);
    expect(createLineWriter(createLogger({ level: "debug" }, stream), {}).enabled).toBe(true);
  });
});
