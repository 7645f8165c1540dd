// The attach proxy: ${PUBLIC_URL}/agent/<branchId>/… is the branch's live opencode server, over HTTP
// and server-sent events (which is all `opencode attach` and the SDK use; checked by logging a real
// TUI session: its live view is GET /global/event, its turns POST /session/{id}/message). So
//   opencode attach https://…/agent/br_… -p <API key | JWT | share-link token>
// works in opencode's own TUI against the cloud branch. HTTP Basic: any username, the password is
// the credential (a Bearer header works too). The client's credentials never reach opencode and the
// server's own password never leaves the platform: each request is re-signed here. Reads need
// VIEWER, writes EDITOR (viewers get 403), strangers 404 as for a missing branch, bad credentials
// 401. Turns become PROMPT runs (resolvers/agent-attach.ts); event streams end when the access they
// were opened with ends. The live agent is on the instance that owns the branch (cluster/): on any
// other, the request is passed on to the owner as it came (signed, over /internal/cluster/agent/…),
// which checks the credential itself and streams the answer back through this one.

import { classifyAttach } from "../agent/live/attach-policy.ts";
import type { BranchServer } from "../agent/live/branch-server.ts";
import { PeerError } from "../cluster/peer-client.ts";
import { AccessWatchHub } from "../resolvers/access-watch.ts";
import {
  type AttachAccess,
  attachAccess,
  attachedTurn,
  requireAttachRole,
  watchAttachAccess,
} from "../resolvers/agent-attach.ts";
import { fromPeer } from "../resolvers/branch-runtime.ts";
import type { Context, Services } from "../resolvers/context.ts";
import { AppError } from "../resolvers/errors.ts";
import { liveAgentOf } from "../resolvers/live-agent.ts";
import { SandboxError } from "../sandbox/provider.ts";
import type { Authenticator } from "./auth/authenticate.ts";
import { createContext } from "./context.ts";
import { limitBody } from "./limits.ts";

/** Request headers that are the client's own business or about this hop only. */
const DROPPED_REQUEST = new Set([
  "authorization",
  "proxy-authorization",
  "cookie",
  "host",
  "connection",
  "keep-alive",
  "upgrade",
  "te",
  "trailer",
  "transfer-encoding",
  "content-length",
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-real-ip",
]);
/** Response headers that are about the hop to opencode, or would speak for the platform. */
const DROPPED_RESPONSE = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "www-authenticate",
  "set-cookie",
  "content-length",
]);
const CHALLENGE = { "www-authenticate": 'Basic realm="opencode.cloud agent", charset="UTF-8"' };

export interface AgentProxy {
  handle(
    request: Request,
    branchId: string,
    path: string,
    search: string,
    clientAddress: string,
    /** Passed on by another instance to this one as the branch's owner: served here or refused. */
    asOwner?: boolean,
  ): Promise<Response>;
  /** Ends every stream the proxy holds open (shutdown). */
  close(): Promise<void>;
}

/** The credential of a request: Basic's password (any username), or a Bearer token. */
function credentialOf(request: Request): string | null {
  const header = request.headers.get("authorization") ?? "";
  const bearer = /^Bearer\s+(\S+)$/i.exec(header);
  if (bearer) return bearer[1]!;
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header);
  if (!basic) return null;
  const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  const password = colon >= 0 ? decoded.slice(colon + 1) : "";
  return password || null;
}

/** opencode's own error shape ({name, data: {message}}), which its clients show, with our code. */
function refusal(error: AppError, extra: Record<string, string> = {}): Response {
  return Response.json(
    { name: error.code, data: { message: error.message, code: error.code, ...(error.details ?? {}) } },
    {
      status: error.httpStatus,
      headers: { ...(error.code === "UNAUTHENTICATED" ? CHALLENGE : {}), ...extra },
    },
  );
}

function forwardedHeaders(request: Request): Headers {
  const headers = new Headers();
  for (const [name, value] of request.headers) if (!DROPPED_REQUEST.has(name)) headers.set(name, value);
  return headers;
}

function responseHeaders(from: Headers): Headers {
  const headers = new Headers();
  for (const [name, value] of from) if (!DROPPED_RESPONSE.has(name)) headers.set(name, value);
  headers.set("cache-control", from.get("cache-control") ?? "no-store");
  return headers;
}

export function createAgentProxy(deps: {
  services: Services;
  auth: Authenticator;
  maxBodyBytes: number;
}): AgentProxy {
  const { services, auth } = deps;
  const hub = new AccessWatchHub(services);
  /** Ends each stream open now (shutdown). */
  const streams = new Set<() => void>();

  /** Passes an event stream on, for as long as the access it was opened with lasts. */
  function watchedStream(body: ReadableStream<Uint8Array>, access: AttachAccess): ReadableStream<Uint8Array> {
    const reader = body.getReader();
    let ended = false;
    let stopWatching = () => {};
    let out!: ReadableStreamDefaultController<Uint8Array>;
    const end = () => {
      if (ended) return;
      ended = true;
      stopWatching();
      streams.delete(end);
      void reader.cancel().catch(() => {});
      try {
        out.close();
      } catch {}
    };
    return new ReadableStream<Uint8Array>({
      start(controller) {
        out = controller;
        streams.add(end);
        stopWatching = watchAttachAccess(hub, services.bus, access, "VIEWER", end);
      },
      async pull(controller) {
        const next = await reader.read().catch(() => ({ done: true, value: undefined }));
        if (ended) return;
        if (next.done) end();
        else controller.enqueue(next.value);
      },
      cancel: end,
    });
  }

  async function forward(server: BranchServer, request: Request, pathAndQuery: string, access: AttachAccess) {
    const upstream = await server.client.fetch(pathAndQuery, {
      method: request.method,
      headers: forwardedHeaders(request),
      body: request.method === "GET" || request.method === "HEAD" ? undefined : await request.arrayBuffer(),
    });
    const headers = responseHeaders(upstream.headers);
    const stream = (upstream.headers.get("content-type") ?? "").includes("text/event-stream");
    const body = stream && upstream.body ? watchedStream(upstream.body, access) : upstream.body;
    return new Response(body, { status: upstream.status, headers });
  }

  async function serve(
    ctx: Context,
    access: AttachAccess,
    request: Request,
    path: string,
    search: string,
  ): Promise<Response> {
    const kind = classifyAttach(request.method, path);
    if (kind.kind === "refused") throw new AppError("FORBIDDEN", kind.reason);
    if (kind.kind !== "read") requireAttachRole(access, "EDITOR");
    const pathAndQuery = `${path}${search}`;
    const branchId = access.branch.id;

    if (kind.kind === "abort") {
      // The run in progress ends as ABORTED (its turn posts opencode's abort); otherwise opencode's own.
      const runId = services.runner.runningOn(branchId);
      if (runId && services.runner.abort(runId)) return Response.json(true);
    }
    if (kind.kind === "turn") {
      const body = new Uint8Array(await request.arrayBuffer());
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(new TextDecoder().decode(body));
      } catch {
        throw new AppError("BAD_USER_INPUT", "The request body is not JSON");
      }
      const turn = await attachedTurn(ctx, access, kind.input(parsed), {
        kind: "forward",
        sessionId: kind.sessionId,
        method: request.method,
        pathAndQuery,
        headers: forwardedHeaders(request),
        body,
      });
      const answer = await turn.answer;
      if (!answer)
        throw new AppError("CONFLICT", `The turn (run ${turn.runId}) ended before the agent answered`, {
          runId: turn.runId,
        });
      const headers = responseHeaders(answer.headers);
      headers.set("x-opencode-cloud-run", turn.runId);
      return new Response(answer.body as BodyInit, { status: answer.status, headers });
    }
    return forward(await liveAgentOf(services, branchId), request, pathAndQuery, access);
  }

  /** The request passed on to the branch's owner, its answer streamed back (null: this instance owns it). */
  async function toOwner(request: Request, branchId: string, path: string, search: string) {
    const where = await services.branchRuntime.locate(branchId);
    if (where.here) return null;
    const body =
      request.method === "GET" || request.method === "HEAD"
        ? null
        : new Uint8Array(await request.arrayBuffer());
    let answer: Response;
    // A turn's answer may take minutes: no time limit, but an owner that dies meanwhile ends the wait.
    const watch = services.branchRuntime.watchOwner(where.peer);
    try {
      answer = await where.peer.forward(
        request.method,
        `/agent/${encodeURIComponent(branchId)}${path}${search}`,
        request.headers,
        body,
        watch.signal,
      );
    } catch {
      throw fromPeer(new PeerError("unreachable", "UNAVAILABLE", "the owner did not answer"));
    } finally {
      watch.stop();
    }
    const headers = responseHeaders(answer.headers);
    if (!answer.body) return new Response(null, { status: answer.status, headers });
    // Ended at shutdown like the streams served here.
    const reader = answer.body.getReader();
    let end = () => {};
    const body$ = new ReadableStream<Uint8Array>({
      start(controller) {
        end = () => {
          streams.delete(end);
          void reader.cancel().catch(() => {});
          try {
            controller.close();
          } catch {}
        };
        streams.add(end);
      },
      async pull(controller) {
        const next = await reader.read().catch(() => ({ done: true, value: undefined }));
        if (next.done) end();
        else controller.enqueue(next.value);
      },
      cancel: () => end(),
    });
    return new Response(body$, { status: answer.status, headers });
  }

  return {
    async handle(request, branchId, path, search, clientAddress, asOwner = false) {
      try {
        const credential = credentialOf(request);
        if (!credential)
          throw new AppError(
            "UNAUTHENTICATED",
            "Sign in with HTTP Basic: any username, and an API key, a JWT or a share-link token as the password",
          );
        const access = await attachAccess(services, (c) => auth.fromCredential(c), branchId, credential);
        const limited = await limitBody(request, deps.maxBodyBytes);
        if (!asOwner) {
          const passed = await toOwner(limited, branchId, path || "/", search);
          if (passed) return passed;
        } else if (!(await services.branchRuntime.locate(branchId)).here)
          throw new AppError("UNAVAILABLE", "This branch moved to another instance; try again");
        const ctx = createContext(services, { viewer: access.viewer, clientAddress });
        return await serve(ctx, access, limited, path || "/", search);
      } catch (error) {
        if (error instanceof AppError) return refusal(error);
        if (error instanceof SandboxError && error.code === "NOT_FOUND")
          return refusal(new AppError("NOT_FOUND", "Branch not found"));
        services.log.warn("agent proxy request failed", { branchId, path, error: String(error) });
        return refusal(new AppError("UNAVAILABLE", "The branch's agent could not be reached; try again"));
      }
    },
    async close() {
      for (const end of [...streams]) end();
      await hub.close();
    },
  };
}
