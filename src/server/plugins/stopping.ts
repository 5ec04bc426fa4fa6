import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from "fastify";
import type { IncomingMessage, ServerResponse } from "node:http";

export interface StoppingSwitch {
  /** From now on `/readyz` answers 503 `{"status":"stopping"}`; everything else is still served. */
  begin(): void;
  readonly stopping: boolean;
}

/**
 * Readiness during the shutdown drain delay. Load balancers that poll `/readyz` must see the
 * instance leave while it still serves, which is the point of SHUTDOWN_DRAIN_DELAY_MS; without
 * this `/readyz` would stay green until the port closed. Register before the server listens
 * (Fastify takes hooks only until then).
 */
export function registerStoppingReadiness<Logger extends FastifyBaseLogger>(
  fastify: FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, Logger>,
): StoppingSwitch {
  let stopping = false;
  // Callback-style: it runs on every request, and an async hook costs each one a promise.
  fastify.addHook("onRequest", (request, reply, done) => {
    if (stopping && request.routeOptions.url === "/readyz") {
      reply.code(503).header("cache-control", "no-store").send({ status: "stopping" });
      return;
    }
    done();
  });
  return {
    begin() {
      stopping = true;
    },
    get stopping() {
      return stopping;
    },
  };
}
