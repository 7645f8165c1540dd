// The internal routes (`/internal/cluster/...`) on every instance's own port: owner operations other
// instances call (op/<name>, JSON in and out) and the agent proxy passed on from another instance
// (agent/<branchId>/<path>). Every call must carry a good signature (peer-auth.ts); anything else is
// refused before a byte of it is acted on, and user credentials open nothing here.
import type { PeerAuth } from "./peer-auth.ts";
import { INTERNAL_PREFIX, type WireError } from "./peer-client.ts";

/** Largest body a peer may send (a 10 MB file write, base64-encoded, with room to spare). */
const MAX_BODY_BYTES = 32 * 1024 * 1024;

// biome-ignore lint/suspicious/noExplicitAny: JSON from a signed peer; each operation reads its own fields
export type OwnerOps = Record<string, (body: any) => Promise<unknown>>;

export interface ClusterRoutesDeps {
  auth: PeerAuth;
  ops: OwnerOps;
  log: { warn(message: string, fields?: Record<string, unknown>): void };
}

const refused = (status: number, code: string, message: string) =>
  Response.json({ errors: [{ message, extensions: { code } }] }, { status });

/** An owner operation's error as it travels (its class is named, since this folder imports no resolvers). */
export function toWire(error: unknown): WireError | null {
  const e = error as {
    name?: string;
    code?: unknown;
    message?: string;
    details?: unknown;
    path?: unknown;
    size?: unknown;
    maxBytes?: unknown;
  };
  if (typeof e?.code !== "string") return null;
  const kind =
    e.name === "AppError" ? "app" : /SandboxError|FileTooLargeError/.test(e.name ?? "") ? "sandbox" : null;
  if (!kind) return null;
  const details =
    e.name === "FileTooLargeError"
      ? { path: e.path, size: e.size, maxBytes: e.maxBytes }
      : (e.details as Record<string, unknown> | undefined);
  return { kind, code: e.code, message: e.message ?? "", ...(details ? { details } : {}) };
}

/** The agent proxy, served here as the branch's owner (it authenticates the user itself). */
export type AgentHandler = (
  request: Request,
  branchId: string,
  path: string,
  search: string,
) => Promise<Response>;

export type ClusterRoutes = ReturnType<typeof createClusterRoutes>;

export function createClusterRoutes(deps: ClusterRoutesDeps) {
  const refusedCall = (url: URL, reason: string) => {
    deps.log.warn("refused an internal cluster call", { path: url.pathname, reason });
    return refused(403, "FORBIDDEN", "Internal route: instances only");
  };
  return {
    matches: (pathname: string) => pathname === INTERNAL_PREFIX || pathname.startsWith(`${INTERNAL_PREFIX}/`),
    async handle(request: Request, url: URL, agentProxy: AgentHandler): Promise<Response> {
      const early = deps.auth.precheck(request.headers);
      if (early) return refusedCall(url, early);
      const declared = Number(request.headers.get("content-length") ?? 0);
      if (declared > MAX_BODY_BYTES) return refused(413, "PAYLOAD_TOO_LARGE", "Body too large");
      const body = new Uint8Array(await request.arrayBuffer());
      if (body.byteLength > MAX_BODY_BYTES) return refused(413, "PAYLOAD_TOO_LARGE", "Body too large");
      const signed = `${url.pathname}${url.search}`;
      const why = deps.auth.refuse(request.method, signed, body, request.headers);
      if (why) return refusedCall(url, why);
      const rest = url.pathname.slice(INTERNAL_PREFIX.length);
      const agent = /^\/agent\/([^/]+)(\/.*)?$/.exec(rest);
      if (agent) {
        const headers = new Headers(request.headers);
        const forwarded = new Request(request.url, {
          method: request.method,
          headers,
          body: request.method === "GET" || request.method === "HEAD" ? undefined : body,
        });
        return agentProxy(forwarded, decodeURIComponent(agent[1]!), agent[2] ?? "/", url.search);
      }
      const op = /^\/op\/([\w.-]+)$/.exec(rest)?.[1];
      const handler = op && request.method === "POST" ? deps.ops[op] : undefined;
      if (!handler) return refused(404, "NOT_FOUND", `No internal operation ${rest}`);
      try {
        const input = JSON.parse(new TextDecoder().decode(body));
        return Response.json({ result: (await handler(input)) ?? null });
      } catch (error) {
        const wire = toWire(error);
        if (wire) return Response.json({ error: wire });
        deps.log.warn("internal cluster operation failed", { op, error: String(error) });
        return Response.json({
          error: { kind: "app", code: "UNAVAILABLE", message: `The owner could not do ${op}; try again` },
        });
      }
    },
  };
}
