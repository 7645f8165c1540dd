// The edge of the error model: AppError -> GraphQL error with extensions.code; anything unexpected is
// logged with the request id and masked as INTERNAL, so no stack or SQL reaches a client.
import { AsyncLocalStorage } from "node:async_hooks";
import { GraphQLError } from "graphql";
import type { Logger } from "../resolvers/context.ts";
import { AppError, ERROR_CODES } from "../resolvers/errors.ts";

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
    if (original instanceof GraphQLError) return withCode(original, graphQLError);
    // A GraphQLError raised by graphql-js or yoga itself (parse, validation, variables): the client's input.
    if (graphQLError && original === undefined) return withCode(graphQLError);

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

/** Gives an error without a known code BAD_USER_INPUT (keeping its other extensions). */
function withCode(error: GraphQLError, at: GraphQLError = error): GraphQLError {
  const code = error.extensions?.code;
  if (typeof code === "string" && KNOWN_CODES.has(code)) return error;
  return new GraphQLError(error.message, {
    nodes: at.nodes,
    source: at.source,
    positions: at.positions,
    path: at.path,
    extensions: {
      ...error.extensions,
      code: "BAD_USER_INPUT",
      ...(typeof code === "string" ? { reason: code } : {}),
    },
  });
}
