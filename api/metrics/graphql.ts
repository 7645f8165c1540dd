// GraphQL metrics through @graphql-yoga/plugin-prometheus: requests, their duration, the phase
// histograms (parse, validate, context, execute, subscribe), HTTP duration and errors by code.
// Labels a client chooses (operation name, error path, URL) are left out: every distinct value is a
// series kept for the life of the process, so a client could grow memory and the scrape without bound.
//
// Cost on the hot path (`npm run bench:server -- --metrics both`): every family is given as a metric
// object with a label function returning its labels directly. The plugin's default label functions
// build every label (the URL too) and then filter them through Object.entries/fromEntries twice per
// observation, seven observations a request; and graphql_envelop_request_duration is left out: it
// duplicates the phase histograms (parse to execute) and graphql_yoga_http_duration (the whole request).
import {
  createCounter,
  createHistogram,
  type FillLabelsFnParams,
  usePrometheus,
} from "@graphql-yoga/plugin-prometheus";
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

type OperationType = "query" | "mutation" | "subscription" | "unknown";
const byOperationType = (params: FillLabelsFnParams): { operationType: OperationType } => ({
  operationType: params.operationType ?? "unknown",
});

export function graphqlMetrics(registry: Registry): Plugin {
  /** A phase histogram (default buckets), labelled by operation type only. */
  const phase = <Phase extends string>(name: `graphql_envelop_phase_${Phase}`, help: string) =>
    createHistogram<Phase, "operationType">({
      registry,
      histogram: { name, help, labelNames: ["operationType"] },
      fillLabelsFn: byOperationType,
    });
  return usePrometheus({
    registry,
    // Served by api/metrics/endpoint.ts with the platform's families and access rules, not by yoga.
    endpoint: false,
    labels: { operationName: false, path: false, url: false },
    metrics: {
      graphql_envelop_request: createCounter({
        registry,
        counter: {
          name: "graphql_envelop_request",
          help: "Counts the amount of GraphQL requests executed through Envelop",
          labelNames: ["operationType"],
        },
        fillLabelsFn: byOperationType,
      }),
      // Parse to execute: the phase histograms' sum, and within graphql_yoga_http_duration (see above).
      graphql_envelop_request_duration: false,
      // The same timing as a summary (not aggregatable over instances): left out.
      graphql_envelop_request_time_summary: false,
      graphql_envelop_phase_parse: phase(
        "graphql_envelop_phase_parse",
        'Time spent on running GraphQL "parse" function',
      ),
      graphql_envelop_phase_validate: phase(
        "graphql_envelop_phase_validate",
        'Time spent on running GraphQL "validate" function',
      ),
      graphql_envelop_phase_context: phase(
        "graphql_envelop_phase_context",
        "Time spent on building the GraphQL context",
      ),
      graphql_envelop_phase_execute: phase(
        "graphql_envelop_phase_execute",
        'Time spent on running the GraphQL "execute" function',
      ),
      graphql_envelop_phase_subscribe: phase(
        "graphql_envelop_phase_subscribe",
        'Time spent on running the GraphQL "subscribe" function',
      ),
      // It walks every document with TypeInfo; the schema deprecates nothing yet (turn on when it does).
      graphql_envelop_deprecated_field: false,
      graphql_envelop_schema_change: false,
      graphql_envelop_execute_resolver: false,
      graphql_yoga_http_duration: createHistogram({
        registry,
        histogram: {
          name: "graphql_yoga_http_duration",
          help: "Time spent on HTTP connection",
          labelNames: ["operationType", "method", "statusCode"],
        },
        fillLabelsFn: (params, { request, response }: { request: Request; response: Response }) => ({
          ...byOperationType(params),
          method: request.method,
          statusCode: response.status,
        }),
      }),
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
