// GET /metrics: the Prometheus text, behind the bearer token when one is configured, on the API's
// listener or on a listener of its own (serving nothing else).
import { createHash, timingSafeEqual } from "node:crypto";
import { AppError } from "../../resolvers/errors.ts";
import { errorResponse } from "../errors.ts";
import type { RunningServer, Runtime } from "../runtime/types.ts";

export type MetricsHandler = (request: Request) => Promise<Response>;

/** Equal in constant time (hashes first, so lengths do not leak either). */
function sameSecret(given: string, expected: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

export function metricsHandler(options: {
  token: string | undefined;
  scrape: () => Promise<{ text: string; contentType: string }>;
}): MetricsHandler {
  const { token, scrape } = options;
  return async (request) => {
    if (request.method !== "GET" && request.method !== "HEAD")
      return errorResponse(new AppError("NOT_FOUND", `No route for ${request.method} /metrics`));
    if (token !== undefined) {
      const given = /^Bearer (.+)$/i.exec(request.headers.get("authorization") ?? "")?.[1]?.trim();
      if (!given || !sameSecret(given, token))
        return errorResponse(
          new AppError("UNAUTHENTICATED", "/metrics needs its bearer token (METRICS_TOKEN)"),
          {
            "www-authenticate": 'Bearer realm="metrics"',
          },
        );
    }
    const { text, contentType } = await scrape();
    return new Response(request.method === "HEAD" ? null : text, {
      headers: { "content-type": contentType, "cache-control": "no-store" },
    });
  };
}

/** A listener of its own that serves /metrics and nothing else (e.g. bound to an internal address). */
export function serveMetrics(
  runtime: Runtime,
  listener: { host: string; port: number },
  handle: MetricsHandler,
): RunningServer {
  return runtime.serve({
    hostname: listener.host,
    port: listener.port,
    maxRequestBodySize: 64 * 1024,
    fetch: async (request) =>
      new URL(request.url).pathname === "/metrics"
        ? handle(request)
        : errorResponse(new AppError("NOT_FOUND", "Only /metrics is served here")),
  });
}
