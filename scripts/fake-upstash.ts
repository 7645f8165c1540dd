// A small server that speaks Upstash's documented Redis REST protocol in front of a real redis-server,
// so the Upstash path is tested (and benchmarked) end to end without the cloud service:
//   - auth: `Authorization: Bearer <token>` (or `?_token=`); 401 {"error": "Unauthorized"} otherwise;
//   - POST / with the command as a JSON array, or the command in the path (/set/foo/bar, a POST body
//     appended as the last argument) -> {"result": ...}, or 400 {"error": "..."};
//   - POST /pipeline (array of commands) -> [{"result"}|{"error"}, ...] in order, not atomic;
//   - POST /multi-exec -> the same shape, run as one MULTI/EXEC transaction;
//   - `Upstash-Encoding: base64`: every string in a result base64-encoded except "OK";
//   - POST|GET /subscribe/<channel>: SSE, `data: subscribe,<channel>,1` then `data: message,<channel>,<m>`.
// As on Upstash, blocking commands (BLPOP, XREAD BLOCK, ...) are refused over REST. It counts the
// commands it was sent (what Upstash bills): `stats()`, or GET /__fake/stats (not part of Upstash).
//
//   bun scripts/fake-upstash.ts --redis redis://127.0.0.1:6379 [--port 8079] [--token secret]
import { parseArgs } from "node:util";
import { Redis } from "ioredis";

export interface FakeUpstash {
  url: string;
  token: string;
  /** Commands received over REST (a pipeline of 3 counts 3) and SSE streams opened. */
  stats(): { commands: number; requests: number; subscriptions: number };
  /** Ends every open SSE stream (as a restart or a network fault would). */
  dropSubscriptions(): void;
  stop(): Promise<void>;
}

const BLOCKING = new Set([
  "BLPOP",
  "BRPOP",
  "BLMOVE",
  "BRPOPLPUSH",
  "BZPOPMIN",
  "BZPOPMAX",
  "BLMPOP",
  "BZMPOP",
]);
const REFUSED = new Set(["SUBSCRIBE", "PSUBSCRIBE", "MONITOR", "SYNC", "PSYNC", "WAIT"]);

function encodeStrings(value: unknown): unknown {
  if (typeof value === "string") return value === "OK" ? value : Buffer.from(value).toString("base64");
  if (Array.isArray(value)) return value.map(encodeStrings);
  return value;
}

/** Why a command cannot run over REST, or null. */
function refusal(command: string[]): string | null {
  const name = String(command[0] ?? "").toUpperCase();
  if (!name) return "ERR empty command";
  if (BLOCKING.has(name) || REFUSED.has(name)) return `ERR ${name} is not supported over REST`;
  if (
    (name === "XREAD" || name === "XREADGROUP") &&
    command.some((arg) => String(arg).toUpperCase() === "BLOCK")
  )
    return `ERR blocking ${name} is not supported over REST`;
  return null;
}

export async function startFakeUpstash(options: {
  redisUrl: string;
  token?: string;
  port?: number;
}): Promise<FakeUpstash> {
  const token = options.token ?? crypto.randomUUID();
  const redis = new Redis(options.redisUrl, { protocol: 2, maxRetriesPerRequest: 3 });
  redis.on("error", () => {});
  const streams = new Set<{ close(): void }>();
  let commands = 0;
  let requests = 0;
  let subscriptions = 0;

  const run = async (command: unknown[]): Promise<{ result?: unknown; error?: string }> => {
    const args = command.map((arg) => (typeof arg === "string" ? arg : JSON.stringify(arg)));
    const refused = refusal(args);
    if (refused) return { error: refused };
    try {
      return { result: await redis.call(args[0]!, ...args.slice(1)) };
    } catch (error) {
      return { error: (error as Error).message };
    }
  };

  const subscribe = (channel: string, request: Request): Response => {
    subscriptions++;
    const subscriber = redis.duplicate();
    subscriber.on("error", () => {});
    const encoder = new TextEncoder();
    let closed = false;
    let controllerRef: ReadableStreamDefaultController<Uint8Array> | undefined;
    const handle = {
      close() {
        if (closed) return;
        closed = true;
        streams.delete(handle);
        subscriber.disconnect();
        try {
          controllerRef?.close();
        } catch {}
      },
    };
    streams.add(handle);
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controllerRef = controller;
        const send = (line: string) => {
          if (!closed) controller.enqueue(encoder.encode(`data: ${line}\n\n`));
        };
        subscriber.on("message", (ch: string, message: string) => send(`message,${ch},${message}`));
        try {
          const count = await subscriber.subscribe(channel);
          send(`subscribe,${channel},${count}`);
        } catch (error) {
          send(`error,${channel},${(error as Error).message}`);
          handle.close();
        }
      },
      cancel: () => handle.close(),
    });
    request.signal.addEventListener("abort", () => handle.close());
    return new Response(body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" },
    });
  };

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
    idleTimeout: 0,
    async fetch(request) {
      const url = new URL(request.url);
      if (url.pathname === "/__fake/stats") return Response.json({ commands, requests, subscriptions });
      const auth = request.headers.get("authorization");
      const given = auth?.startsWith("Bearer ") ? auth.slice(7) : url.searchParams.get("_token");
      if (given !== token) return Response.json({ error: "Unauthorized" }, { status: 401 });
      requests++;
      const base64 = request.headers.get("upstash-encoding")?.toLowerCase() === "base64";
      const encode = (value: unknown) => (base64 ? encodeStrings(value) : value);
      const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);

      if (parts[0] === "subscribe" && parts[1]) {
        commands++;
        return subscribe(parts[1], request);
      }
      if (!["GET", "POST", "PUT", "HEAD"].includes(request.method))
        return Response.json({ error: "Method not allowed" }, { status: 405 });

      const text = request.method === "GET" || request.method === "HEAD" ? "" : await request.text();
      let body: unknown;
      if (text) {
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
      }

      if (parts[0] === "pipeline" || parts[0] === "multi-exec") {
        if (!Array.isArray(body) || !body.every(Array.isArray))
          return Response.json({ error: "ERR the body must be an array of commands" }, { status: 400 });
        const batch = body as unknown[][];
        commands += batch.length;
        if (parts[0] === "pipeline") {
          const results = [];
          for (const command of batch) {
            const outcome = await run(command);
            results.push(outcome.error ? { error: outcome.error } : { result: encode(outcome.result) });
          }
          return Response.json(results);
        }
        const refused = batch.map((c) => refusal(c.map(String))).find(Boolean);
        if (refused) return Response.json({ error: refused }, { status: 400 });
        try {
          const results = (await redis
            .multi(batch.map((c) => c.map((arg) => (typeof arg === "string" ? arg : JSON.stringify(arg)))))
            .exec()) as [Error | null, unknown][];
          return Response.json(
            results.map(([error, result]) => (error ? { error: error.message } : { result: encode(result) })),
          );
        } catch (error) {
          return Response.json({ error: (error as Error).message }, { status: 400 });
        }
      }

      // One command: the JSON array body, or the path (with a POSTed value as its last argument).
      let command: unknown[];
      if (parts.length === 0) {
        if (!Array.isArray(body))
          return Response.json({ error: "ERR the body must be a command array" }, { status: 400 });
        command = body;
      } else {
        command = [
          ...parts,
          ...Array.from(url.searchParams).flatMap(([k, v]) => (k === "_token" ? [] : [k, v])),
        ];
        if (text) command.splice(parts.length, 0, text);
      }
      commands++;
      const outcome = await run(command);
      if (outcome.error) return Response.json({ error: outcome.error }, { status: 400 });
      return Response.json({ result: encode(outcome.result) });
    },
  });

  return {
    url: `http://127.0.0.1:${server.port}`,
    token,
    stats: () => ({ commands, requests, subscriptions }),
    dropSubscriptions() {
      for (const stream of [...streams]) stream.close();
    },
    async stop() {
      for (const stream of [...streams]) stream.close();
      await server.stop(true);
      redis.disconnect();
    },
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      redis: { type: "string", default: "redis://127.0.0.1:6379" },
      port: { type: "string", default: "8079" },
      token: { type: "string" },
    },
  });
  const fake = await startFakeUpstash({
    redisUrl: values.redis!,
    port: Number(values.port),
    token: values.token,
  });
  console.log(`fake Upstash REST at ${fake.url} (token ${fake.token}) in front of ${values.redis}`);
}
