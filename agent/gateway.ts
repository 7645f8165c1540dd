// The model gateway: agent runs reach the model only through it, so no provider key enters a sandbox.
// It listens on a unix socket (bind-mounted into local sandboxes, reached through a loopback
// forwarder there) and, for microVM sandboxes that can only dial out (contree), on a TCP address.
// It accepts a per-run token instead of a key, adds the real credentials, forwards to the
// configured OpenAI-compatible upstream, streams the answer back, and counts tokens from the
// provider's own `usage` (the sandbox cannot fake its usage records). A run's token dies with the run.
// node:http keeps it runtime-neutral (Bun and Deno both serve node:http on a unix socket).
import { randomBytes } from "node:crypto";
import { chmod, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

export interface Upstream {
  /** OpenAI-compatible base URL, e.g. https://api.openai.com/v1 or a fake model's /v1. */
  baseURL: string;
  apiKey?: string;
  /** The model name the upstream knows (the sandbox asks for any name; this one is used). */
  model: string;
}

export interface Usage {
  requests: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

interface Grant {
  runId: string;
  upstream: Upstream;
  usage: Usage;
  maxRequests: number;
}

const MAX_BODY = 8 * 1024 * 1024;

export class ModelGateway {
  private readonly grants = new Map<string, Grant>();
  private server: Server | undefined;
  private http: Server | undefined;

  constructor(
    readonly socketPath: string,
    private readonly log: (message: string, fields?: Record<string, unknown>) => void = () => {},
  ) {}

  private createServer(): Server {
    return createServer((req, res) => {
      this.handle(req, res).catch((error) => {
        this.log("gateway request failed", { error: String(error) });
        if (!res.headersSent)
          send(res, 502, {
            error: { message: "The model provider could not be reached", type: "gateway_error" },
          });
        else res.destroy();
      });
    });
  }

  /** Also serves on a TCP address (for sandboxes that reach it over the network); returns the port. */
  async listenTcp(host: string, port: number): Promise<number> {
    this.http = this.createServer();
    await new Promise<void>((resolve, reject) => {
      this.http!.once("error", reject);
      this.http!.listen(port, host, resolve);
    });
    return (this.http.address() as { port: number }).port;
  }

  async start(): Promise<void> {
    await rm(this.socketPath, { force: true });
    this.server = this.createServer();
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
      usage: { requests: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0 },
    });
    return token;
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

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0]!;
    const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
    const grant = token ? this.grants.get(token) : undefined;
    if (!grant)
      return send(res, 401, {
        error: { message: "Unknown or expired run token", type: "invalid_request_error" },
      });
    if (req.method !== "POST" || !/\/chat\/completions$/.test(path)) {
      return send(res, 404, {
        error: { message: `Only POST /v1/chat/completions is served, not ${req.method} ${path}` },
      });
    }
    if (grant.usage.requests >= grant.maxRequests) {
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
    grant.usage.requests++;
    const stream = body.stream === true;
    const upstreamBody = {
      ...body,
      model: grant.upstream.model,
      ...(stream ? { stream_options: { include_usage: true } } : {}),
    };

    const controller = new AbortController();
    res.on("close", () => controller.abort()); // the sandbox went away (an aborted turn): stop paying
    const upstream = await fetch(`${grant.upstream.baseURL.replace(/\/$/, "")}/chat/completions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(grant.upstream.apiKey ? { authorization: `Bearer ${grant.upstream.apiKey}` } : {}),
      },
      body: JSON.stringify(upstreamBody),
      signal: controller.signal,
    });
    res.writeHead(upstream.status, {
      "content-type": upstream.headers.get("content-type") ?? "application/json",
    });
    if (!upstream.body) return void res.end();

    const decoder = new TextDecoder();
    let pending = "";
    const count = (text: string) => {
      const usage = (
        JSON.parse(text) as {
          usage?: { prompt_tokens?: number; completion_tokens?: number; total_tokens?: number };
        }
      ).usage;
      if (!usage) return;
      grant.usage.promptTokens += usage.prompt_tokens ?? 0;
      grant.usage.completionTokens += usage.completion_tokens ?? 0;
      grant.usage.totalTokens +=
        usage.total_tokens ?? (usage.prompt_tokens ?? 0) + (usage.completion_tokens ?? 0);
    };
    for await (const chunk of upstream.body) {
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
