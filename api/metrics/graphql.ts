// GraphQL metrics through @graphql-yoga/plugin-prometheus: requests, their duration, the phase
// histograms (parse, validate, context, execute, subscribe), HTTP duration and errors by code.
// Labels a client chooses (operation name, error path, URL) are left out: every distinct value is a
// series kept for the life of the process, so a client could grow memory and the scrape without bound.
import { createCounter, type FillLabelsFnParams, usePrometheus } from "@graphql-yoga/plugin-prometheus";
import type { Plugin } from "graphql-yoga";
import type { Registry } from "prom-client";
import { createErrorMasker } from "../errors.ts";

// The code a client is told is decided by the error masker, which runs after this plugin sees the
// result: the same masker (without its log line: the request's own masking logs it) names the code.
const quiet = () => {};
const masked = createErrorMasker({ debug: quiet, info: quiet, warn: quiet, error: quiet });

/** The error's extensions.code as the client receives it (a fixed set of codes). */
function codeOf(error: unknown, phase: string | undefined): string {
  // A failed validation is reported without its errors; every validation error is BAD_USER_INPUT.
  if (error === undefined && phase === "validate") return "BAD_USER_INPUT";
  const code = (masked(error) as { extensions?: { code?: unknown } }).extensions?.code;
  return typeof code === "string" ? code : "INTERNAL";
}

export function graphqlMetrics(registry: Registry): Plugin {
  return usePrometheus({
    registry,
    // Served by api/metrics/endpoint.ts with the platform's families and access rules, not by yoga.
    endpoint: false,
    labels: { operationName: false, path: false, url: false },
    metrics: {
      graphql_envelop_request: true,
      graphql_envelop_request_duration: true,
      // The same timing as the histogram, as a summary (not aggregatable over instances): left out.
      graphql_envelop_request_time_summary: false,
      graphql_envelop_phase_parse: true,
      graphql_envelop_phase_validate: true,
      graphql_envelop_phase_context: true,
      graphql_envelop_phase_execute: true,
      graphql_envelop_phase_subscribe: true,
      // It walks every document with TypeInfo; the schema deprecates nothing yet (turn on when it does).
      graphql_envelop_deprecated_field: false,
      graphql_envelop_schema_change: false,
      graphql_envelop_execute_resolver: false,
      graphql_yoga_http_duration: true,
      graphql_envelop_error_result: createCounter<
        "parse" | "validate" | "context" | "execute" | "subscribe",
        "operationType" | "phase" | "code",
        FillLabelsFnParams & { error: unknown; errorPhase: string }
      >({
        registry,
        counter: {
          name: "graphql_envelop_error_result",
          help: "GraphQL errors in results, by phase and extensions.code",
          labelNames: ["operationType", "phase", "code"],
        },
        fillLabelsFn: (params) => ({
          operationType: params.operationType ?? "unknown",
          phase: params.errorPhase ?? "unknown",
          code: codeOf(params.error, params.errorPhase),
        }),
      }),
    },
  });
}
