// The HTTP side of the fake (node:http): records every request, applies injected faults, checks the
// bearer token and the Project header, routes by the route table (404 unknown path, 405 wrong
// method), and writes replies: `{error, status}` bodies for errors, gzip whenever the client accepts
// it (errors and streams included), streams flushed per chunk with Z_SYNC_FLUSH. An armed body fault
// breaks a streamed body after its byte count (see BodyFault).
import http from "node:http";
import type { Socket } from "node:net";
import zlib from "node:zlib";
import { ApiError } from "./errors.ts";
import type { Faults } from "./faults.ts";
import type { BodyFault } from "./index.ts";
import { matchRoute, type RouteSpec } from "./routes.ts";

export interface StreamWriter {
  /** Writes (and with gzip, sync-flushes) one chunk; false once the client is gone. */
  write(chunk: string | Uint8Array): Promise<boolean>;
  /** Cuts the connection without finishing the response. */
  destroy(): void;
  readonly closed: boolean;
}

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  json?: unknown;
  text?: string;
  body?: Uint8Array;
  contentType?: string;
  /** A streamed body, written chunk by chunk. */
  stream?: (out: StreamWriter) => Promise<void>;
}

export interface RequestContext {
  route: RouteSpec;
  params: Record<string, string>;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /** The raw body, streamed. */
  body: AsyncIterable<Uint8Array>;
  /** The body parsed as JSON (undefined when empty); 400 when it is not JSON. */
  json(): Promise<unknown>;
}

export interface ServerConfig {
  token: string;
  project: string | null;
  faults: Faults;
  requests: { method: string; path: string; headers: Record<string, string> }[];
  handle(ctx: RequestContext): Promise<Reply>;
}

export interface RunningServer {
  server: http.Server;
  url: string;
  close(): Promise<void>;
}

const MAX_JSON_BYTES = 16 << 20;

function acceptsGzip(req: http.IncomingMessage): boolean {
  return /\bgzip\b/i.test(String(req.headers["accept-encoding"] ?? ""));
}

function errorReply(error: ApiError): Reply {
  const headers: Record<string, string> = { ...error.headers };
  if (error.retryAfter !== undefined) headers["Retry-After"] = String(error.retryAfter);
  return { status: error.status, headers, json: { error: error.message, status: error.status } };
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).byteLength;
    if (size > MAX_JSON_BYTES) throw new ApiError(413, "request body too large");
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, "request body is not valid JSON");
  }
}

async function send(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  reply: Reply,
  bodyFault: BodyFault | null = null,
): Promise<void> {
  const headers: Record<string, string> = { ...reply.headers };
  const head = req.method === "HEAD";
  const gzip = acceptsGzip(req) && !head && reply.status !== 204 && reply.status !== 304;
  let body: Buffer | null = null;
  if (reply.json !== undefined) {
    body = Buffer.from(JSON.stringify(reply.json));
    headers["Content-Type"] ??= "application/json; charset=utf-8";
  } else if (reply.text !== undefined) {
    body = Buffer.from(reply.text);
    headers["Content-Type"] ??= reply.contentType ?? "text/plain; charset=utf-8";
  } else if (reply.body) {
    body = Buffer.from(reply.body);
    headers["Content-Type"] ??= reply.contentType ?? "application/octet-stream";
  } else if (reply.contentType) headers["Content-Type"] ??= reply.contentType;

  if (reply.stream && !head) {
    if (gzip) {
      delete headers["Content-Length"];
      headers["Content-Encoding"] = "gzip";
    }
    res.writeHead(reply.status, headers);
    res.flushHeaders();
    await writeStream(res, gzip, bodyFault ? breakAfter(bodyFault, reply.stream) : reply.stream);
    return;
  }
  if (head || !body || body.byteLength === 0) {
    if (!head) headers["Content-Length"] ??= "0";
    res.writeHead(reply.status, headers);
    res.end();
    return;
  }
  if (gzip) {
    body = zlib.gzipSync(body);
    headers["Content-Encoding"] = "gzip";
  }
  headers["Content-Length"] = String(body.byteLength);
  res.writeHead(reply.status, headers);
  res.end(body);
}

/** The stream writer plus what body faults need. */
interface FaultableWriter extends StreamWriter {
  /** Ends the response cleanly without finishing the gzip stream: the trailer never comes. */
  endEarly(): Promise<void>;
  /** Resolves when the connection is gone (the client hung up, or the fake closed it). */
  whenGone(): Promise<void>;
}

async function writeStream(
  res: http.ServerResponse,
  gzip: boolean,
  produce: (out: StreamWriter) => Promise<void>,
): Promise<void> {
  let closed = false;
  let destroyed = false;
  res.on("close", () => {
    closed = true;
  });
  const raw = (chunk: Uint8Array) =>
    new Promise<boolean>((resolve) => {
      if (closed) return resolve(false);
      const ok = res.write(chunk);
      if (ok) resolve(true);
      else {
        const done = () => {
          res.off("drain", done);
          res.off("close", done);
          resolve(!closed);
        };
        res.on("drain", done);
        res.on("close", done);
      }
    });
  const compressor = gzip ? zlib.createGzip() : null;
  const pending: Buffer[] = [];
  compressor?.on("data", (data: Buffer) => pending.push(data));
  const flushCompressed = async () => {
    while (pending.length) if (!(await raw(pending.shift()!))) return false;
    return true;
  };
  let ended = false;
  const gone = new Promise<void>((resolve) => res.once("close", () => resolve()));
  const writer: FaultableWriter = {
    get closed() {
      return closed || destroyed || ended;
    },
    async write(chunk) {
      if (closed || destroyed) return false;
      const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      if (!compressor) return raw(bytes);
      compressor.write(bytes);
      await new Promise<void>((resolve) => compressor.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve()));
      return flushCompressed();
    },
    destroy() {
      destroyed = true;
      compressor?.destroy();
      res.socket?.destroy();
      res.destroy();
    },
    async endEarly() {
      if (closed || destroyed || ended) return;
      ended = true;
      await flushCompressed();
      compressor?.destroy();
      if (!closed) res.end();
    },
    whenGone: () => gone,
  };
  try {
    await produce(writer);
  } catch (error) {
    // Mid-stream there is no status left to send: cut the connection.
    if (!(error instanceof ApiError)) console.error("fake-contree: stream failed:", error);
    writer.destroy();
    return;
  }
  if (destroyed || ended) return;
  if (compressor && !closed) {
    await new Promise<void>((resolve) => {
      compressor.once("end", () => resolve());
      compressor.end();
    });
    await flushCompressed();
  }
  if (!closed) res.end();
}

export function startServer(config: ServerConfig, port: number): Promise<RunningServer> {
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    void handleRequest(config, req, res).catch((error) => {
      console.error("fake-contree: request failed:", error);
      try {
        if (!res.headersSent) {
          res.writeHead(500, { "Content-Type": "application/json" });
          res.end(JSON.stringify({ error: "internal error", status: 500 }));
        } else res.destroy();
      } catch {}
    });
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      const actual = typeof address === "object" && address ? address.port : port;
      resolve({
        server,
        url: `http://127.0.0.1:${actual}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            for (const socket of sockets) socket.destroy();
            (server as { closeAllConnections?: () => void }).closeAllConnections?.();
          }),
      });
    });
  });
}

async function handleRequest(config: ServerConfig, req: http.IncomingMessage, res: http.ServerResponse) {
  const method = (req.method ?? "GET").toUpperCase();
  const url = new URL(req.url ?? "/", "http://fake-contree");
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[key.toLowerCase()] = Array.isArray(value) ? value.join(", ") : value;
  }
  config.requests.push({ method, path: url.pathname + url.search, headers });

  const fault = config.faults.take(method, url.pathname);
  if (fault) {
    if (fault.mode === "drop") {
      req.socket.destroy();
      return;
    }
    const error = new ApiError(
      fault.status,
      `injected fault: ${fault.status}`,
      fault.retryAfter ?? ([410, 425, 429, 503].includes(fault.status) ? 1 : undefined),
    );
    return send(req, res, errorReply(error));
  }

  const reply = await dispatch(config, req, method, url).catch((error: unknown) => {
    if (error instanceof ApiError) return errorReply(error);
    console.error("fake-contree: handler failed:", error);
    const message = error instanceof Error ? error.message : String(error);
    const traceback = error instanceof Error && error.stack ? error.stack.split("\n") : undefined;
    return { status: 500, json: { error: `internal error: ${message}`, status: 500, traceback } } as Reply;
  });
  await send(
    req,
    res,
    reply,
    reply.stream && method !== "HEAD" ? config.faults.takeBody(method, url.pathname) : null,
  );
}

/** Wraps a stream producer so its body breaks as `fault` says once `afterBytes` have been written. */
function breakAfter(fault: BodyFault, produce: NonNullable<Reply["stream"]>): NonNullable<Reply["stream"]> {
  return async (out) => {
    const early = out as FaultableWriter;
    let left = fault.afterBytes;
    let broken = false;
    const trip = async (): Promise<false> => {
      if (broken) return false;
      broken = true;
      if (fault.mode === "reset") out.destroy();
      else if (fault.mode === "truncate") await early.endEarly();
      else await early.whenGone();
      return false;
    };
    const faulty: StreamWriter = {
      get closed() {
        return broken || out.closed;
      },
      async write(chunk) {
        if (broken) return false;
        const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
        if (bytes.byteLength < left) {
          left -= bytes.byteLength;
          return out.write(bytes);
        }
        if (left > 0 && !(await out.write(bytes.subarray(0, left)))) return false;
        left = 0;
        return trip();
      },
      destroy: () => out.destroy(),
    };
    if (left === 0) await trip();
    else await produce(faulty);
  };
}

async function dispatch(
  config: ServerConfig,
  req: http.IncomingMessage,
  method: string,
  url: URL,
): Promise<Reply> {
  const auth = String(req.headers.authorization ?? "");
  const bearer = /^Bearer\s+(.+)$/i.exec(auth)?.[1]?.trim();
  if (!bearer || bearer !== config.token) {
    throw new ApiError(401, "Unauthorized: missing or invalid bearer token", undefined, {
      "WWW-Authenticate": 'Bearer realm="contree"',
    });
  }
  if (config.project !== null) {
    const project = req.headers.project;
    if (project === undefined || project === "") throw new ApiError(400, 'Missing "Project" header');
    if (project !== config.project)
      throw new ApiError(403, `No access to project ${JSON.stringify(project)}`);
  }
  const match = matchRoute(method, url.pathname);
  if ("status" in match) {
    if (match.status === 405) {
      throw new ApiError(405, `method ${method} not allowed for ${url.pathname}`, undefined, {
        Allow: match.allow.join(", "),
      });
    }
    throw new ApiError(404, `no route for ${method} ${url.pathname}`);
  }
  return config.handle({
    route: match.route,
    params: match.params,
    query: url.searchParams,
    headers: req.headers,
    body: req,
    json: () => readJson(req),
  });
}
