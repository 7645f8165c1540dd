// Typed errors of the ConTree client. Every failure is a ContreeError with a `kind`; HTTP failures
// carry the status, the body's `error`, Retry-After and the request that failed, so callers can
// branch with `instanceof` or on `kind` without parsing messages.

import type { OperationResponse } from "./types.ts";

export type ContreeErrorKind =
  | "bad_request"
  | "unauthenticated"
  | "permission_denied"
  | "not_found"
  | "conflict"
  | "gone"
  | "unprocessable"
  | "too_early"
  | "too_many_requests"
  | "server"
  | "http"
  | "network"
  | "truncated"
  | "stream_stalled"
  | "aborted"
  | "protocol"
  | "events_unavailable"
  | "operation_failed";

export interface ContreeErrorInit {
  status?: number | null;
  /** The body's `error` field (usually a string), or the raw text of a non-JSON body. */
  error?: unknown;
  traceback?: string[] | null;
  retryAfterMs?: number | null;
  requestMethod?: string | null;
  /** Path below the base URL, without the query (e.g. `/v1/instances`). */
  requestPath?: string | null;
  /** How many attempts were made before giving up (1 = no retry). */
  attempts?: number;
  cause?: unknown;
}

export class ContreeError extends Error {
  readonly kind: ContreeErrorKind;
  readonly status: number | null;
  readonly error: unknown;
  readonly traceback: string[] | null;
  readonly retryAfterMs: number | null;
  readonly requestMethod: string | null;
  readonly requestPath: string | null;
  attempts: number;

  constructor(kind: ContreeErrorKind, message: string, init: ContreeErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.kind = kind;
    this.status = init.status ?? null;
    this.error = init.error ?? null;
    this.traceback = init.traceback ?? null;
    this.retryAfterMs = init.retryAfterMs ?? null;
    this.requestMethod = init.requestMethod ?? null;
    this.requestPath = init.requestPath ?? null;
    this.attempts = init.attempts ?? 1;
  }
}

export class ContreeBadRequestError extends ContreeError {}
export class ContreeUnauthenticatedError extends ContreeError {}
export class ContreeNotFoundError extends ContreeError {}
export class ContreeConflictError extends ContreeError {}
/** 410: finished but not yet durable (event log, archive); retry after Retry-After. */
export class ContreeGoneError extends ContreeError {}
/** 422: the path is unusable in the image. */
export class ContreeUnprocessableError extends ContreeError {}
/** 425: rejected before processing (log or guest not ready yet). */
export class ContreeTooEarlyError extends ContreeError {}
/** 429: rejected before processing. */
export class ContreeTooManyRequestsError extends ContreeError {}
/** Any 5xx. */
export class ContreeServerError extends ContreeError {}
/** Any other non-success status (405, 406, 418, an unexpected 3xx…). */
export class ContreeStatusError extends ContreeError {}

/** 403; `permission` is parsed from `Insufficient permissions: X` (may read `spawn or spawn_disposable`). */
export class ContreePermissionDeniedError extends ContreeError {
  readonly permission: string | null;
  constructor(message: string, init: ContreeErrorInit = {}) {
    super("permission_denied", message, init);
    const match =
      typeof init.error === "string" ? /insufficient permissions:\s*(.+)$/i.exec(init.error) : null;
    this.permission = match?.[1]?.trim() ?? null;
  }
}

/** The request never got an HTTP answer, or the answer broke off (reset, truncated body, DNS…). */
export class ContreeNetworkError extends ContreeError {
  constructor(message: string, init: ContreeErrorInit = {}) {
    super("network", message, init);
  }
}

/** Why a response body is known to be incomplete. */
export type TruncationReason =
  /** The gzip stream ended without its trailer, or is corrupt (the server sends every body gzipped). */
  | "compression"
  /** The connection closed (reset, premature close) before the body was complete. */
  | "connection"
  /** The tar archive stops inside an entry or before its end-of-archive blocks. */
  | "archive";

/**
 * A response body (an archive, an event stream, any body being read) ended before it was complete.
 * Nothing read from it can be trusted to be whole: re-request it. Idempotent requests whose body
 * is read whole are retried by the transport; streams are the caller's to re-request.
 */
export class ContreeTruncatedError extends ContreeError {
  readonly reason: TruncationReason;
  constructor(reason: TruncationReason, message: string, init: ContreeErrorInit = {}) {
    super("truncated", message, init);
    this.reason = reason;
  }
}

/**
 * A streamed body sent nothing for `idleMs` (ContreeClientOptions.streamIdleMs): the peer stalled or
 * the connection went half-open. The connection has been closed.
 */
export class ContreeStreamStalledError extends ContreeError {
  readonly idleMs: number;
  constructor(idleMs: number, message: string, init: ContreeErrorInit = {}) {
    super("stream_stalled", message, init);
    this.idleMs = idleMs;
  }
}

/**
 * The caller's AbortSignal fired. Every client method throws this (never a bare DOMException);
 * `cause` is `signal.reason`.
 */
export class ContreeAbortedError extends ContreeError {
  constructor(reason: unknown, init: ContreeErrorInit = {}) {
    super("aborted", "ConTree request aborted", { ...init, cause: reason });
  }
}

/** The server answered something this client cannot read (bad JSON, missing id, broken SSE frame). */
export class ContreeProtocolError extends ContreeError {
  constructor(message: string, init: ContreeErrorInit = {}) {
    super("protocol", message, init);
  }
}

/** The events route answered 400/404/405/406: the caller should poll the operation instead. */
export class ContreeEventsUnavailableError extends ContreeError {
  constructor(cause: ContreeError) {
    super("events_unavailable", `event stream unavailable: ${cause.message}`, {
      status: cause.status,
      error: cause.error,
      requestMethod: cause.requestMethod,
      requestPath: cause.requestPath,
      attempts: cause.attempts,
      cause,
    });
  }
}

/** An operation ended FAILED or CANCELLED where the caller needed it to succeed (LiveInstance.stop). */
export class ContreeOperationFailedError extends ContreeError {
  readonly operation: OperationResponse;
  constructor(operation: OperationResponse) {
    const detail = operation.error ? `: ${operation.error}` : "";
    super("operation_failed", `operation ${operation.uuid} ended ${operation.status}${detail}`);
    this.operation = operation;
  }
}

const BY_STATUS: Record<number, [ContreeErrorKind, typeof ContreeError]> = {
  400: ["bad_request", ContreeBadRequestError],
  401: ["unauthenticated", ContreeUnauthenticatedError],
  404: ["not_found", ContreeNotFoundError],
  409: ["conflict", ContreeConflictError],
  410: ["gone", ContreeGoneError],
  422: ["unprocessable", ContreeUnprocessableError],
  425: ["too_early", ContreeTooEarlyError],
  429: ["too_many_requests", ContreeTooManyRequestsError],
};

/** Builds the typed error for a non-success response whose body was read as text. */
export function errorFromResponse(
  status: number,
  bodyText: string,
  init: Omit<ContreeErrorInit, "status" | "error" | "traceback">,
): ContreeError {
  let error: unknown = bodyText;
  let traceback: string[] | null = null;
  try {
    const payload: unknown = JSON.parse(bodyText);
    if (payload && typeof payload === "object" && !Array.isArray(payload)) {
      const record = payload as Record<string, unknown>;
      if ("error" in record) error = record.error;
      if (Array.isArray(record.traceback)) traceback = record.traceback.map(String);
    }
  } catch {
    // not JSON: keep the text
  }
  const detail = typeof error === "string" ? error : JSON.stringify(error);
  const message = `${init.requestMethod ?? "?"} ${init.requestPath ?? "?"} → ${status}${detail ? `: ${detail}` : ""}`;
  const full: ContreeErrorInit = { ...init, status, error, traceback };
  if (status === 403) return new ContreePermissionDeniedError(message, full);
  const known = BY_STATUS[status];
  if (known) return new known[1](known[0], message, full);
  if (status >= 500) return new ContreeServerError("server", message, full);
  return new ContreeStatusError("http", message, full);
}

export function isAbortError(err: unknown): boolean {
  return err instanceof ContreeAbortedError;
}
