// The edge of the error model: AppError -> GraphQL error with extensions.code; anything unexpected is
// logged with the request id and masked as INTERNAL, so no stack or SQL reaches a client.
import { AsyncLocalStorage } from "node:async_hooks";
import { GraphQLError } from "graphql";
import type { Plugin } from "graphql-yoga";
import type { Logger } from "../resolvers/context.ts";
import { AppError, ERROR_CODES, type ErrorCode } from "../resolvers/errors.ts";
import { SandboxError, type SandboxErrorCode } from "../sandbox/provider.ts";

/** Sandbox failures a client caused (or may retry); the rest are unexpected and masked. */
const SANDBOX_CODES: Partial<Record<SandboxErrorCode, ErrorCode>> = {
  NOT_FOUND: "NOT_FOUND",
  BAD_PATH: "BAD_USER_INPUT",
  BAD_BASE: "BAD_USER_INPUT",
  TOO_LARGE: "PAYLOAD_TOO_LARGE",
  QUOTA_EXCEEDED: "QUOTA_EXCEEDED",
  BUSY: "CONFLICT",
  UNSUPPORTED: "NOT_SUPPORTED",
  UNAVAILABLE: "UNAVAILABLE",
};

/** The request being served, for logs written far from the request (error masking). */
export const requestScope = new AsyncLocalStorage<{ requestId: string }>();

const KNOWN_CODES = new Set(Object.keys(ERROR_CODES));

/** The GraphQL error a client sees for an AppError; request-level errors also set the HTTP status. */
export function appErrorToGraphQL(error: AppError, at?: GraphQLError, requestLevel = false): GraphQLError {
  const http = requestLevel || error.code === "RATE_LIMITED" ? { status: error.httpStatus } : undefined;
  return new GraphQLError(error.message, {
    nodes: at?.nodes,
    source: at?.source,
    positions: at?.positions,
    path: at?.path,
    extensions: { code: error.code, ...(error.details ?? {}), ...(http ? { http } : {}) },
  });
}

/** A JSON body in the GraphQL response shape, for failures outside the executor (body limits, routing). */
export function errorResponse(error: AppError, headers: Record<string, string> = {}): Response {
  return Response.json(
    { errors: [{ message: error.message, extensions: { code: error.code, ...(error.details ?? {}) } }] },
    { status: error.httpStatus, headers },
  );
}

export function createErrorMasker(log: Logger) {
  return function maskError(error: unknown): Error {
    const graphQLError = error instanceof GraphQLError ? error : undefined;
    const original = graphQLError?.originalError ?? (graphQLError ? undefined : error);

    if (original instanceof AppError) return appErrorToGraphQL(original, graphQLError);
    if (original instanceof SandboxError && SANDBOX_CODES[original.code]) {
      return appErrorToGraphQL(new AppError(SANDBOX_CODES[original.code]!, original.message), graphQLError);
    }
    if (original instanceof GraphQLError) return normaliseGraphQLError(original, graphQLError);
    // A GraphQLError raised by graphql-js or yoga itself (parse, validation, variables): the client's input.
    if (graphQLError && original === undefined) return normaliseGraphQLError(graphQLError);

    const requestId = requestScope.getStore()?.requestId ?? crypto.randomUUID();
    log.error("unexpected error", {
      requestId,
      path: graphQLError?.path?.join("."),
      error:
        original instanceof Error
          ? { name: original.name, message: original.message, stack: original.stack }
          : String(original),
    });
    return new GraphQLError(`Unexpected error; quote request id ${requestId} when reporting it`, {
      nodes: graphQLError?.nodes,
      source: graphQLError?.source,
      positions: graphQLError?.positions,
      path: graphQLError?.path,
      extensions: { code: "INTERNAL", requestId },
    });
  };
}

/**
 * Every GraphQL error leaves with a known code: one without becomes BAD_USER_INPUT (its own code kept
 * as `reason`, e.g. GRAPHQL_VALIDATION_FAILED), and debugging extensions (originalError) are dropped.
 */
export function normaliseGraphQLError(error: GraphQLError, at: GraphQLError = error): GraphQLError {
  const { originalError: _dropped, ...extensions } = (error.extensions ?? {}) as Record<string, unknown>;
  const code = extensions.code;
  const known = typeof code === "string" && KNOWN_CODES.has(code);
  // Yoga answers a body it cannot read with 200 to application/json clients (legacy); the
  // GraphQL-over-HTTP spec says SHOULD 400 for those, and clients handle that better.
  const http = extensions.http as { spec?: boolean; status?: number } | undefined;
  const unreadable = code === "BAD_REQUEST" && http?.spec === true;
  if (unreadable) extensions.http = { ...http, spec: false };
  if (known && _dropped === undefined && at === error && !unreadable) return error;
  return new GraphQLError(error.message, {
    nodes: at.nodes,
    source: at.source,
    positions: at.positions,
    path: at.path,
    extensions: known
      ? extensions
      : { ...extensions, code: "BAD_USER_INPUT", ...(typeof code === "string" ? { reason: code } : {}) },
  });
}

/**
 * Envelop plugin: validation errors (HTTP and graphql-ws alike) get codes like every other error, and
 * so do request bodies and query strings yoga cannot parse.
 */
export function useErrorCodes(): Plugin {
  return {
    // yoga JSON.parses `variables`/`extensions` of GET query strings and form bodies unguarded: a
    // malformed one ("%E0%A4%A", "{") would surface as a SyntaxError, masked as INTERNAL.
    onRequestParse({ requestParser, setRequestParser }) {
      if (!requestParser) return;
      setRequestParser(async (request) => {
        try {
          return await requestParser(request);
        } catch (error) {
          if (!(error instanceof SyntaxError)) throw error;
          throw new GraphQLError("variables and extensions must be JSON", {
            extensions: { code: "BAD_USER_INPUT", http: { status: 400 } },
          });
        }
      });
    },
    onValidate() {
      return ({ result, setResult }) => {
        if (result.length > 0) setResult(result.map((e) => normaliseGraphQLError(e)));
      };
    },
  };
}

const STATUS_CODES: Record<number, ErrorCode> = {
  401: "UNAUTHENTICATED",
  403: "FORBIDDEN",
  404: "NOT_FOUND",
  413: "PAYLOAD_TOO_LARGE",
  429: "RATE_LIMITED",
  503: "UNAVAILABLE",
};

/** An error response without a body (e.g. 415 from yoga) gets a typed GraphQL error body. */
export async function withErrorBody(response: Response): Promise<Response> {
  if (response.status < 400 || (response.headers.get("content-type") ?? "").includes("json")) return response;
  if ((await response.clone().text()).length > 0) return response;
  const code = STATUS_CODES[response.status] ?? (response.status >= 500 ? "INTERNAL" : "BAD_USER_INPUT");
  const message =
    response.status === 415 ? "Unsupported media type: send application/json" : response.statusText || code;
  const typed = Response.json({ errors: [{ message, extensions: { code } }] }, { status: response.status });
  response.headers.forEach((value, key) => {
    if (key !== "content-type" && key !== "content-length") typed.headers.set(key, value);
  });
  return typed;
}
