import { createHash } from "node:crypto";
import { Kind, type OperationDefinitionNode } from "graphql";
import type { GatewayContext } from "../../graphql/context.js";
import type { LineWriter } from "../../logger.js";
import type { Metrics } from "../metrics.js";

/** At most this many root fields are named in a line (an operation may have a few). */
const MAX_FIELDS_LOGGED = 8;

/**
 * The caller's members of a line: the issuer, and the subject hashed, so lines can be correlated
 * per user without holding personal data. Remembered per caller object: the JWT verifier hands
 * the same frozen caller to every request of a cached token, so a busy client costs one hash and
 * one serialisation, not one per request.
 */
const callerMembers = new WeakMap<object, string>();
function callerMember(caller: { issuer?: string | undefined; subject: string }): string {
  let member = callerMembers.get(caller);
  if (member === undefined) {
    const sub = createHash("sha256").update(caller.subject).digest("base64url").slice(0, 16);
    member = `,"caller":{"iss":${JSON.stringify(caller.issuer ?? "none")},"sub":"${sub}"}`;
    callerMembers.set(caller, member);
  }
  return member;
}

/** What a line and the metrics say of an operation: the same for every request of a document. */
interface OperationFacts {
  type: string;
  /** The first root field: the metrics' label. */
  field: string;
  /** `"type":...,"fields":[...]`, serialised. */
  members: string;
}

function describeOperation(operation: OperationDefinitionNode | undefined): OperationFacts {
  const names: string[] = [];
  for (const selection of operation?.selectionSet.selections ?? []) {
    if (selection.kind === Kind.FIELD && names.length < MAX_FIELDS_LOGGED) {
      names.push(selection.name.value);
    }
  }
  const type = operation?.operation ?? "unknown";
  return {
    type,
    field: names[0] ?? "none",
    members: `"type":"${type}","fields":${JSON.stringify(names)}`,
  };
}

/**
 * Remembered per operation node: Apollo's document store hands every request of a stored document
 * the same parsed AST, so a repeated operation is described once.
 */
const operationFacts = new WeakMap<OperationDefinitionNode, OperationFacts>();
const NO_OPERATION = describeOperation(undefined);
function factsOf(operation: OperationDefinitionNode | null | undefined): OperationFacts {
  if (!operation) {
    return NO_OPERATION;
  }
  let facts = operationFacts.get(operation);
  if (facts === undefined) {
    facts = describeOperation(operation);
    operationFacts.set(operation, facts);
  }
  return facts;
}

/**
 * One structured line per GraphQL request (pino, `msg: "graphql request"`) and the per-operation
 * metrics: request id, operation name and type, root fields, outcome (the first error's code, or
 * `ok`), duration, cache hits and misses, upstream calls, and the caller as issuer plus a hash
 * of the subject. Written after the response is formed, from what the request already computed.
 */
export interface AccessLog {
  /** The line and the metrics for one finished request. */
  record(entry: {
    contextValue: GatewayContext | undefined;
    operation: OperationDefinitionNode | null | undefined;
    operationName: string | null | undefined;
    /** The first error's code (formatted: the contract's codes), or undefined when none. */
    errorCode: string | undefined;
    seconds: number;
  }): void;
}

export function createAccessLog(deps: {
  /** The access line's writer (`createLineWriter`): the line holds only the fields built below. */
  lines: LineWriter;
  metrics: Metrics;
}): AccessLog {
  const { lines, metrics } = deps;
  return {
    record({ contextValue, operation, operationName, errorCode, seconds }) {
      const { type, field, members } = factsOf(operation);
      const outcome = errorCode ?? "ok";
      // Metric labels come from the schema (the first root field), never from the client's
      // operation name, so a client cannot grow the number of series.
      metrics.graphqlRequests.inc({ field, type, outcome });
      metrics.graphqlDuration.observe({ field, type }, seconds);
      if (!lines.enabled) {
        return;
      }
      // No context: the request was refused before it had one (a bad credential); the line then
      // has no request id, cache or upstream counts, as pino leaves out undefined fields.
      const usage = contextValue?.usage;
      const caller = contextValue?.caller;
      // Serialised here rather than by pino (logger.ts, createLineWriter): the client's operation
      // name and the outcome go through JSON.stringify; the rest are the parts remembered above,
      // and numbers.
      let line =
        contextValue === undefined ? "" : `"reqId":${JSON.stringify(contextValue.requestId)},`;
      line += `"operation":${JSON.stringify((operationName ?? "anonymous").slice(0, 64))},${members},"outcome":${JSON.stringify(outcome)},"ms":${Math.round(seconds * 10_000) / 10}`;
      if (usage !== undefined) {
        line += `,"cache":{"hits":${usage.cacheHits},"misses":${usage.cacheMisses}},"upstreamCalls":${usage.upstreamCalls}`;
      }
      line += caller ? callerMember(caller) : `,"caller":{"router":true}`;
      lines.info(line, "graphql request");
    },
  };
}

/** The error code a client sees first: formatted errors carry the contract's codes. */
export function firstErrorCode(
  errors: readonly { extensions?: Record<string, unknown> | undefined }[] | undefined,
): string | undefined {
  const first = errors?.[0];
  return first ? String(first.extensions?.code ?? "INTERNAL_SERVER_ERROR") : undefined;
}
