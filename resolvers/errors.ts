// One error model for the whole platform. Domain code throws AppError with a stable code;
// the edge (api/errors.ts) translates it once: GraphQL `extensions.code`, HTTP status, 44xx close code.

export const ERROR_CODES = {
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  BAD_USER_INPUT: 400,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  RATE_LIMITED: 429,
  /** A storage, size or usage limit of the user, session or command was reached (details say which). */
  QUOTA_EXCEEDED: 507,
  INTERNAL: 500,
  /** The session's sandbox provider cannot do this (e.g. ConTree has no deletion and no inbound ports). */
  NOT_SUPPORTED: 501,
  /** Shutting down or overloaded: retry shortly. */
  UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = "AppError";
    this.code = code;
    this.details = details;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code];
  }

  /** WebSocket close code, following graphql-ws's 4000 + HTTP status convention. */
  get closeCode(): number {
    return 4000 + this.httpStatus;
  }
}

export const unauthenticated = (message = "Sign in first: send Authorization: Bearer <token or API key>") =>
  new AppError("UNAUTHENTICATED", message);
export const forbidden = (message = "You are not allowed to do this") => new AppError("FORBIDDEN", message);
export const notFound = (what: string) => new AppError("NOT_FOUND", `${what} not found`);
export const badInput = (message: string, field?: string) =>
  new AppError("BAD_USER_INPUT", message, field ? { field } : undefined);
export const conflict = (message: string) => new AppError("CONFLICT", message);
export const quotaExceeded = (message: string, details?: Record<string, unknown>) =>
  new AppError("QUOTA_EXCEEDED", message, details);
export const rateLimited = (retryAfterSeconds: number) =>
  new AppError("RATE_LIMITED", `Too many attempts; try again in ${retryAfterSeconds} s`, {
    retryAfterSeconds,
  });
