import type { Logger } from "../logger.js";
import type { Actor } from "./upstream-budget.js";

/** An identity change, for the audit trail (who changed which identity). */
export interface AuditEvent {
  event: "identity.created" | "tokens.revoked" | "identity.deleted";
  userId: string;
  actor: Actor;
  /** How: an admin operation, or the caller's own identity (self-service). */
  via: "admin" | "self-service";
}

/** Told of every identity change after ACS accepted it. */
export type Audit = (event: AuditEvent) => void;

/**
 * How an operation on a user id reached that identity: an admin acting on any identity, or a
 * signed-in caller acting on their own (the rights table let a non-admin through only for that).
 */
export function viaOf(actor: Actor): AuditEvent["via"] {
  return actor.isAdmin ? "admin" : "self-service";
}

/**
 * The audit trail as log lines (`"component":"audit"`, `msg` `audit: <event>`, docs/operations.md):
 * who (the token's issuer and the hashed caller key, never the subject in clear), what, which
 * identity, and whether it was self-service; each event also counted by `counter` (the
 * `acsgw_audit_events_total` metric).
 */
export function createAuditLog(options: {
  logger: Logger;
  counter?: { inc(labels: { event: AuditEvent["event"] }): void };
}): Audit {
  const log = options.logger.child({ component: "audit" });
  return ({ event, userId, actor, via }) => {
    options.counter?.inc({ event });
    log.info(
      { audit: event, userId, via, actor: { iss: actor.issuer ?? "none", key: actor.key } },
      `audit: ${event}`,
    );
  };
}
