// The model gateway: agent runs reach the model only through it, so no provider key enters a sandbox.
// It listens on a unix socket (bind-mounted into local sandboxes, reached through a loopback
// relay there, agent/live/sandbox-agent.mjs) and, for microVM sandboxes that can only dial out
// (contree), on a TCP address.
// It accepts a per-run token instead of a key, adds the real credentials, forwards to the
// configured OpenAI-compatible upstream, streams the answer back, and counts tokens from the
// provider's own `usage` (the sandbox cannot fake its usage records). A run's token dies with the run.
// node:http keeps it runtime-neutral (Bun and Deno both serve node:http on a unix socket).
//
// A user's own endpoint is user input: it is checked against the outbound policy on every request
// (DNS may have changed since setModelKey) and the connection goes to the checked addresses only;
// redirects are never followed, and an upstream's error body is logged, not passed back (it could
// be an internal service's answer, secrets included).
import { randomBytes } from "node:crypto";
import { chmod, rm } from "node:fs/promises";
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { request as httpsRequest } from "node:https";
import { OutboundPolicy, OutboundRefusedError, pinnedLookup } from "../sandbox/outbound-policy.ts";

export interface Upstream {
  /** OpenAI-compatible base URL, e.g. https://api.openai.com/v1 or a fake model's /v1. */
  baseURL: string;
  apiKey?: string;
  /** The model name the upstream knows (the sandbox asks for any name; this one is used). */
  model: string;
  /** Set by the operator (server config), not by a user: exempt from the outbound policy. */
  trusted?: boolean;
}

export interface Usage {
  requests: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

interface Grant {
  /** The run whose requests these are (null: a live agent's token between runs: refused). */
  runId: string | null;
  upstream: Upstream | null;
  usage: Usage;
  maxRequests: number;
  /** Only accepted on the unix socket (which only sandboxes reach), never over TCP. */
  socketOnly: boolean;
}

const noUsage = (): Usage => ({ requests: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0 });

const MAX_BODY = 8 * 1024 * 1024;
/** How much of an upstream's error body goes to the log. */
const MAX_LOGGED_ERROR = 2000;
const UNREACHABLE = "The model provider could not be reached";

export class ModelGateway {
  private readonly grants = new Map<string, Grant>();
  private server: Server | undefined;
  private http: Server | undefined;

  private readonly outbound: OutboundPolicy;

  constructor(
    readonly socketPath: string,
    private readonly log: (message: string, fields?: Record<string, unknown>) => void = () => {},
    /** Where users' own endpoints may lead (default: public addresses only). */
    options: { outbound?: OutboundPolicy } = {},
  ) {
    this.outbound = options.outbound ?? new OutboundPolicy({ allowPrivate: false, allowHosts: [] });
  }

  private createServer(via: "socket" | "tcp"): Server {
    return createServer((req, res) => {
      this.handle(req, res, via).catch((error) => {
        // Refused by policy, no such name, refused connection, timeout: one answer for all.
        this.log("gateway request failed", {
          error: String(error),
          ...(error instanceof OutboundRefusedError ? { refused: error.reason } : {}),
        });
        if (!res.headersSent) send(res, 502, { error: { message: UNREACHABLE, type: "gateway_error" } });
        else res.destroy();
      });
    });
  }

  /** Also serves on a TCP address (for sandboxes that reach it over the network); returns the port. */
  async listenTcp(host: string, port: number): Promise<number> {
    this.http = this.createServer("tcp");
    await new Promise<void>((resolve, reject) => {
      this.http!.once("error", reject);
      this.http!.listen(port, host, resolve);
    });
    return (this.http.address() as { port: number }).port;
  }

  async start(): Promise<void> {
    await rm(this.socketPath, { force: true });
    this.server = this.createServer("socket");
    await new Promise<void>((resolve, reject) => {
      this.server!.once("error", reject);
      this.server!.listen(this.socketPath, resolve);
    });
    // Sandboxed processes run as another (mapped) user: let them connect; tokens guard the rest.
    await chmod(this.socketPath, 0o666);
  }

  /** A token for one run; it works until `revoke`. */
  grant(runId: string, upstream: Upstream, options: { maxRequests?: number } = {}): string {
    const token = `occr_${randomBytes(24).toString("base64url")}`;
    this.grants.set(token, {
      runId,
      upstream,
      maxRequests: options.maxRequests ?? 500,
      usage: noUsage(),
      socketOnly: false,
    });
    return token;
  }

  /**
   * A token for a live agent server, which outlives runs: it is refused except while a run is
   * attached to it (`attach` … `detach`), whose model and usage it then carries. Socket only: a
   * copy read off the server (e.g. through its config) is of no use from anywhere else.
   */
  grantServer(): string {
    const token = `occs_${randomBytes(24).toString("base64url")}`;
    this.grants.set(token, {
      runId: null,
      upstream: null,
      maxRequests: 0,
      usage: noUsage(),
      socketOnly: true,
    });
    return token;
  }

  /** The server behind `token` works for `runId` now, on `upstream`, counting from zero. */
  attach(token: string, runId: string, upstream: Upstream, options: { maxRequests?: number } = {}): void {
    const grant = this.grants.get(token);
    if (!grant) throw new Error("attach: unknown gateway token");
    Object.assign(grant, { runId, upstream, maxRequests: options.maxRequests ?? 500, usage: noUsage() });
  }

  /** Ends the attached run's use of a server token (the token stays, refused); returns its usage. */
  detach(token: string): Usage | null {
    const grant = this.grants.get(token);
    if (!grant?.runId) return null;
    const usage = grant.usage;
    Object.assign(grant, { runId: null, upstream: null, maxRequests: 0, usage: noUsage() });
    return usage;
  }

  /** Ends a run's access and returns what it used. */
  revoke(token: string): Usage | null {
    const grant = this.grants.get(token);
    this.grants.delete(token);
    return grant?.usage ?? null;
  }

  usage(token: string): Usage | null {
    return this.grants.get(token)?.usage ?? null;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, via: "socket" | "tcp"): Promise<void> {
    const path = (req.url ?? "/").split("?")[0]!;
    const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
    const found = token ? this.grants.get(token) : undefined;
    const grant = found && !(found.socketOnly && via === "tcp") ? found : undefined;
    if (!grant?.upstream)
      return send(res, 401, {
        error: {
          message: grant ? "No run is in progress on this agent" : "Unknown or expired run token",
          type: "invalid_request_error",
        },
      });
    // What this request is charged to, fixed now (a run may detach while it streams).
    const { usage, upstream: model } = grant;
    if (req.method !== "POST" || !/\/chat\/completions$/.test(path)) {
      return send(res, 404, {
        error: { message: `Only POST /v1/chat/completions is served, not ${req.method} ${path}` },
      });
    }
    if (usage.requests >= grant.maxRequests) {
      return send(res, 429, {
        error: { message: `This run used its ${grant.maxRequests} model requests`, type: "quota_exceeded" },
      });
    }
    const raw = await readBody(req);
    if (raw === null) return send(res, 413, { error: { message: "Request too large" } });
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      return send(res, 400, { error: { message: "Invalid JSON" } });
    }
    usage.requests++;
    const stream = body.stream === true;
    const upstreamBody = {
      ...body,
      model: model.model,
      ...(stream ? { stream_options: { include_usage: true } } : {}),
    };

    const upstream = await this.post(model, JSON.stringify(upstreamBody), res);
    const status = upstream.statusCode ?? 502;
    if (status < 200 || status >= 300) return this.refuseUpstreamAnswer(grant.runId, upstream, res);
    res.writeHead(status, {
      "content-type": String(upstream.headers["content-type"] ?? "application/json"),
    });

    const decoder = new TextDecoder();
    let pending = "";
    const count = (text: string) => {
      const reported = (
        JSON.parse(text) as {
          usage?: { prompt_tokens?: number; completion_tokens?: number; total_tokens?: number };
        }
      ).usage;
      if (!reported) return;
      usage.promptTokens += reported.prompt_tokens ?? 0;
      usage.completionTokens += reported.completion_tokens ?? 0;
      usage.totalTokens +=
        reported.total_tokens ?? (reported.prompt_tokens ?? 0) + (reported.completion_tokens ?? 0);
    };
    for await (const chunk of upstream as AsyncIterable<Buffer>) {
      res.write(chunk);
      pending += decoder.decode(chunk, { stream: true });
      if (!stream) continue;
      // Server-sent events: complete "data: {...}" lines may carry usage.
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        try {
          count(line.slice(6));
        } catch {}
      }
    }
    if (!stream) {
      try {
        count(pending);
      } catch {}
    }
    res.end();
  }

  /**
   * POSTs to the grant's upstream. A user's endpoint is resolved and checked now, and the socket
   * connects to exactly those addresses (Host and TLS name stay the URL's host).
   */
  private async post(upstream: Upstream, body: string, res: ServerResponse): Promise<IncomingMessage> {
    const target = upstream.trusted
      ? { url: new URL(upstream.baseURL), lookup: undefined }
      : await this.outbound.resolve(upstream.baseURL, ["http", "https"]).then((t) => ({
          url: t.url,
          lookup: t.literal ? undefined : pinnedLookup(t.addresses),
        }));
    const url = new URL(target.url.href);
    url.pathname = `${url.pathname.replace(/\/+$/, "")}/chat/completions`;
    const request = url.protocol === "https:" ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
            ...(upstream.apiKey ? { authorization: `Bearer ${upstream.apiKey}` } : {}),
          },
          ...(target.lookup ? { lookup: target.lookup } : {}),
        },
        resolve,
      );
      req.on("error", reject);
      res.on("close", () => req.destroy()); // the sandbox went away (an aborted turn): stop paying
      req.end(body);
    });
  }

  /**
   * A non-2xx answer (redirects included: they are not followed) becomes a generic error with the
   * upstream's status; its body goes to the log, truncated, never to the sandbox or the user.
   */
  private async refuseUpstreamAnswer(
    runId: string | null,
    upstream: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    const status = upstream.statusCode ?? 502;
    let logged = "";
    for await (const chunk of upstream as AsyncIterable<Buffer>) {
      if (logged.length < MAX_LOGGED_ERROR) logged += chunk.toString("utf8");
    }
    this.log("model provider answered with an error", {
      runId,
      status,
      body: logged.slice(0, MAX_LOGGED_ERROR),
    });
    const redirect = status >= 300 && status < 400;
    const retryAfter = upstream.headers["retry-after"];
    res.writeHead(redirect || status < 400 ? 502 : status, {
      "content-type": "application/json",
      ...(typeof retryAfter === "string" && /^\d{1,6}$/.test(retryAfter)
        ? { "retry-after": retryAfter }
        : {}),
    });
    res.end(
      JSON.stringify({
        error: {
          message: redirect
            ? `The model provider answered with a redirect (HTTP ${status}), which is not followed`
            : `The model provider answered HTTP ${status}`,
          type: "upstream_error",
          status,
        },
      }),
    );
  }

  async close(): Promise<void> {
    this.grants.clear();
    for (const server of [this.server, this.http]) {
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      server?.closeAllConnections?.();
    }
    await rm(this.socketPath, { force: true });
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).byteLength;
    if (size > MAX_BODY) return null;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}
