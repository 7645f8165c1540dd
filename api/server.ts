// The HTTP surface, runtime-neutral: /graphql (yoga + GraphiQL, graphql-ws on the same path),
// /healthz and /schema.graphql. Returns a fetch handler; api/runtime/* serves it.
import { EnvelopArmorPlugin } from "@escape.tech/graphql-armor";
import { GraphQLError, type GraphQLSchema, printSchema } from "graphql";
import { createYoga } from "graphql-yoga";
import type { ClusterRoutes } from "../cluster/routes.ts";
import type { CollabServer } from "../collab/server.ts";
import type { Context, Services, Viewer } from "../resolvers/context.ts";
import { AppError } from "../resolvers/errors.ts";
import { health } from "../resolvers/health.ts";
import { sessionTreeSvg } from "../resolvers/tree-svg.ts";
import { createAgentProxy } from "./agent-proxy.ts";
import type { Authenticator } from "./auth/authenticate.ts";
import type { Config } from "./config.ts";
import { createContext, createInheritingContext } from "./context.ts";
import { createErrorMasker, errorResponse, requestScope, useErrorCodes, withErrorBody } from "./errors.ts";
import { createGraphQLWebSocket, GRAPHQL_WS_PROTOCOL } from "./graphql-ws.ts";
import { createRequestLimiter, limitBody } from "./limits.ts";
import { useLiveAccess } from "./live-access.ts";
import type { Metrics } from "./metrics/index.ts";
import type { AppFetch, SocketLike } from "./runtime/types.ts";
import { createWebPage } from "./web-page.ts";

export interface AppDeps {
  collab: CollabServer;
  config: Config;
  schema: GraphQLSchema;
  services: Services;
  auth: Authenticator;
  /** The internal routes instances call each other on (cluster/); null or absent: one instance. */
  cluster?: ClusterRoutes | null;
  /** Prometheus metrics (api/metrics); null or absent: /metrics is off. */
  metrics?: Metrics | null;
}

export interface App {
  fetch: AppFetch;
  /** Refuses new requests, waits for in-flight ones (up to the grace period), closes sockets. */
  close(): Promise<void>;
}

/**
 * Server context handed to yoga per request: over HTTP the whole Context (services inherited, see
 * createInheritingContext); over graphql-ws only the request's facts, which the context factory builds on.
 */
type ServerContext = Pick<Context, "viewer" | "clientAddress" | "requestId"> & Partial<Context>;

const DEFAULT_QUERY = `# Welcome to opencode.cloud.
# 1. Run the register (or login) mutation below.
# 2. Copy the token into the Headers tab below:
#      {"Authorization": "Bearer <token>"}
# 3. Run the "me" query.
mutation Register {
  register(email: "you@example.com", password: "correct horse battery") {
    token
    user { id email }
  }
}

query Me {
  me { id email apiKeys { name prefix lastUsedAt } }
  health { ok version isolation }
}
`;

function requestIdOf(request: Request): string {
  const given = request.headers.get("x-request-id");
  return given && /^[\w.:-]{1,64}$/.test(given) ? given : crypto.randomUUID();
}

export function createApp(deps: AppDeps): App {
  const { config, schema, services, auth, collab } = deps;
  const { log } = services;
  const maskError = createErrorMasker(log);

  const yoga = createYoga<ServerContext, Context>({
    schema,
    graphqlEndpoint: "/graphql",
    landingPage: false,
    // limitBody (api/limits.ts) caps every body before yoga sees it; yoga's own cap would pipe each
    // body through a counting TransformStream and a new Request, the largest share of the hot path.
    maxRequestBodySize: false,
    // GraphiQL is bundled (no CDN), so it works offline; subscriptions in it use graphql-ws. The bundle
    // is ~18 MB of JavaScript (~75 MB resident, ~75 ms to load), so it loads on the first page view.
    renderGraphiQL: async (options) =>
      (await import("@graphql-yoga/render-graphiql")).renderGraphiQL(options),
    graphiql: { title: "opencode.cloud", subscriptionsProtocol: "WS", defaultQuery: DEFAULT_QUERY },
    // HTTP requests arrive with their context built already (nothing to add); graphql-ws passes facts.
    context: (initial) => (initial.loaders ? ({} as Context) : createContext(services, initial)),
    maskedErrors: { maskError: (error) => maskError(error) },
    logging: {
      // Yoga logs at debug several times a request: skipped outright unless debug logs are on.
      debug:
        config.logLevel === "debug"
          ? (...args) => log.debug(String(args[0]), { args: args.slice(1).map(String) })
          : () => {},
      info: (...args) => log.info(String(args[0])),
      warn: (...args) => log.warn(String(args[0])),
      // Client errors (GraphQLError) are expected traffic; unexpected ones are logged by the masker.
      error: (...args) =>
        args[0] instanceof GraphQLError
          ? log.debug(args[0].message)
          : log.error(String(args[0]), { args: args.slice(1).map(String) }),
    },
    plugins: [
      ...(deps.metrics ? [deps.metrics.graphql] : []),
      useErrorCodes(),
      // graphql-armor: depth, cost, alias, token and directive limits, maintained against real attacks.
      EnvelopArmorPlugin({
        maxDepth: { n: config.limits.maxDepth },
        costLimit: { maxCost: config.limits.maxCost },
        maxAliases: { n: config.limits.maxAliases },
        maxTokens: { n: config.limits.maxTokens },
        maxDirectives: { n: 50 },
        // The schema is public (/schema.graphql), so suggestions reveal nothing and help GraphiQL users.
        blockFieldSuggestion: { enabled: false },
      }),
      // Subscriptions (graphql-ws and SSE) end when the viewer loses the access they need.
      useLiveAccess(services),
    ],
  });

  // `opencode attach <Branch.agentUrl>`: the branch's live opencode server, behind the platform's auth.
  const agentProxy = createAgentProxy({ services, auth, maxBodyBytes: config.limits.maxBodyBytes });
  // Per user and per API key, over every instance when the limiter is shared (one call per request).
  const limitRequests = createRequestLimiter({
    rateLimiter: services.rateLimiter,
    bus: services.bus,
    perUser: services.limits.requestsPerMinutePerUser,
    perApiKey: services.limits.requestsPerMinutePerApiKey,
    log,
  });
  // graphql-ws operations count against the same request limits.
  const ws = createGraphQLWebSocket({ yoga, auth, bus: services.bus, log, limitRequests });
  const sdl = printSchema(schema);
  // The live session page (/app): static files and the graphql-ws browser client.
  const webPage = createWebPage();

  let inFlight = 0;
  let closing = false;
  let drained: (() => void) | undefined;

  async function route(
    request: Request,
    url: URL,
    clientAddress: string,
    requestId: string,
  ): Promise<Response> {
    if (url.pathname === "/healthz") {
      const report = await health(services);
      return Response.json(report, { status: report.ok ? 200 : 503 });
    }
    if (url.pathname === "/metrics" && deps.metrics?.onApiListener)
      return deps.metrics.onApiListener(request);
    if (deps.cluster?.matches(url.pathname))
      return deps.cluster.handle(request, url, (forwarded, branchId, path, search) =>
        agentProxy.handle(forwarded, branchId, path, search, clientAddress, true),
      );
    if (url.pathname === "/schema.graphql") {
      return new Response(sdl, { headers: { "content-type": "text/plain; charset=utf-8" } });
    }
    if (url.pathname === "/graphql") {
      const limited = await limitBody(request, config.limits.maxBodyBytes);
      let viewer: Viewer | null = null;
      // GraphiQL's own page needs no credential; everything else authenticates first.
      const wantsGraphiQL =
        request.method === "GET" && (request.headers.get("accept") ?? "").includes("text/html");
      const applied = limitRequests.before();
      if (!wantsGraphiQL) viewer = await auth.fromAuthorizationHeader(request.headers.get("authorization"));
      // False: a revocation from another instance just arrived, so the credential is checked again.
      if (viewer && !(await limitRequests.check(viewer, applied)))
        viewer = await auth.fromAuthorizationHeader(request.headers.get("authorization"));
      return yoga.fetch(limited, createInheritingContext(services, { viewer, clientAddress, requestId }));
    }
    const tree = /^\/sessions\/([^/]+)\/tree\.svg$/.exec(url.pathname);
    if (tree && request.method === "GET") {
      // Authorized like the session; ?token= lets an <img> tag carry the credential.
      const token = url.searchParams.get("token");
      const authenticate = () =>
        token
          ? auth.fromCredential(token)
          : auth.fromAuthorizationHeader(request.headers.get("authorization"));
      const applied = limitRequests.before();
      let viewer = await authenticate();
      if (viewer && !(await limitRequests.check(viewer, applied))) viewer = await authenticate();
      const ctx = createContext(services, { viewer, clientAddress, requestId });
      const svg = await sessionTreeSvg(ctx, decodePathSegment(tree[1]!, "session id"));
      return new Response(svg, {
        headers: { "content-type": "image/svg+xml; charset=utf-8", "cache-control": "no-store" },
      });
    }
    const agent = /^\/agent\/([^/]+)(\/.*)?$/.exec(url.pathname);
    if (agent) {
      const branchId = decodePathSegment(agent[1]!, "branch id");
      return agentProxy.handle(request, branchId, agent[2] ?? "/", url.search, clientAddress);
    }
    const page = await webPage(request, url);
    if (page) return page;
    throw new AppError("NOT_FOUND", `No route for ${request.method} ${url.pathname}; the API is at /graphql`);
  }

  const fetch: AppFetch = async (request, connection) => {
    const url = new URL(request.url);
    if (
      url.pathname.startsWith("/collab/") &&
      request.headers.get("upgrade")?.toLowerCase() === "websocket"
    ) {
      if (closing)
        return errorResponse(new AppError("UNAVAILABLE", "Server is shutting down"), { "retry-after": "1" });
      // y-websocket: the room is the path after /collab/; auth happens on the socket (auth frame + 44xx).
      let room: string;
      try {
        room = decodeURIComponent(url.pathname.slice("/collab/".length));
      } catch {
        return errorResponse(new AppError("BAD_USER_INPUT", "The room name is not valid percent-encoding"));
      }
      const accepted = connection.upgrade(collabSocket(collab, room, url.searchParams.get("token")));
      return accepted ? undefined : errorResponse(new AppError("BAD_USER_INPUT", "WebSocket upgrade failed"));
    }
    if (url.pathname === "/graphql" && request.headers.get("upgrade")?.toLowerCase() === "websocket") {
      if (closing)
        return errorResponse(new AppError("UNAVAILABLE", "Server is shutting down"), { "retry-after": "1" });
      const offered = (request.headers.get("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
      if (!offered.includes(GRAPHQL_WS_PROTOCOL)) {
        return errorResponse(
          new AppError("BAD_USER_INPUT", `Use the ${GRAPHQL_WS_PROTOCOL} subprotocol (graphql-ws)`),
        );
      }
      if (connection.upgrade(ws.handler(connection.remoteAddress))) return undefined;
      return errorResponse(new AppError("BAD_USER_INPUT", "WebSocket upgrade failed"));
    }

    const requestId = requestIdOf(request);
    if (closing) {
      return errorResponse(new AppError("UNAVAILABLE", "Server is shutting down"), {
        "retry-after": "1",
        "x-request-id": requestId,
      });
    }
    inFlight++;
    try {
      const response = await withErrorBody(
        await requestScope.run({ requestId }, () => route(request, url, connection.remoteAddress, requestId)),
      );
      response.headers.set("x-request-id", requestId);
      return response;
    } catch (error) {
      if (error instanceof AppError) {
        const headers: Record<string, string> = { "x-request-id": requestId };
        if (error.code === "UNAUTHENTICATED") headers["www-authenticate"] = 'Bearer error="invalid_token"';
        const retryAfter = error.details?.retryAfterSeconds;
        if (typeof retryAfter === "number") headers["retry-after"] = String(retryAfter);
        return errorResponse(error, headers);
      }
      log.error("unhandled request error", {
        requestId,
        error: String(error),
        stack: (error as Error)?.stack,
      });
      return errorResponse(new AppError("INTERNAL", `Unexpected error; quote request id ${requestId}`), {
        "x-request-id": requestId,
      });
    } finally {
      inFlight--;
      if (closing && inFlight === 0) drained?.();
    }
  };

  return {
    fetch,
    async close() {
      closing = true;
      await ws.close();
      await agentProxy.close();
      if (inFlight > 0) {
        const done = new Promise<void>((resolve) => {
          drained = resolve;
        });
        const timeout = new Promise<void>((resolve) => setTimeout(resolve, config.shutdownGraceMs).unref?.());
        await Promise.race([done, timeout]);
        if (inFlight > 0) log.warn("shutdown grace period over; abandoning in-flight requests", { inFlight });
      }
      await yoga.dispose?.();
    },
  };
}

/** A percent-encoded path segment; malformed encoding (e.g. "%E0%A4%A") is the client's error. */
function decodePathSegment(segment: string, what: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new AppError("BAD_USER_INPUT", `The ${what} in the path is not valid percent-encoding`);
  }
}

/**
 * The socket handlers of one collaboration connection, built apart from the request so the socket
 * keeps only the room and token alive, not the Request, its headers and URL (a few kB per socket).
 */
function collabSocket(collab: CollabServer, room: string, token: string | null) {
  let peer: ReturnType<CollabServer["open"]> | undefined;
  return {
    open(socket: SocketLike) {
      const { subscribe, unsubscribe, publish } = socket;
      // Bun's topics fan an update out to a room's sockets in one call; elsewhere the room loops.
      const topics = subscribe && unsubscribe && publish ? { subscribe, unsubscribe, publish } : undefined;
      peer = collab.open(
        { send: (d) => socket.send(d), close: (c, r) => socket.close(c, r), topics },
        room,
        token,
      );
    },
    message(data: string | Uint8Array) {
      peer?.message(typeof data === "string" ? new TextEncoder().encode(data) : data);
    },
    close() {
      peer?.close();
    },
  };
}
