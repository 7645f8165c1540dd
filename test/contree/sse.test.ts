// Unit tests of the ConTree SSE layer: the frame parser, incremental reads through per-chunk gzip,
// and the resuming iterator (drops, sse_error, truncation, 410, unavailable routes) against a small
// scripted node:http stub, so each fault happens exactly where the test says.
import { afterEach, describe, expect, test } from "bun:test";
import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { constants, createGzip } from "node:zlib";
import {
  ContreeAbortedError,
  ContreeClient,
  ContreeEventsUnavailableError,
  ContreeProtocolError,
  type OperationEvent,
  readSseFrames,
  SseParser,
} from "../../sandbox/contree/index.ts";

// ---- stub server ---------------------------------------------------------------------------------

interface StubRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage["headers"];
}

class Reply {
  private gzip: ReturnType<typeof createGzip> | null = null;
  constructor(
    readonly raw: ServerResponse,
    private readonly wantsGzip: boolean,
  ) {}
  json(status: number, body: unknown, headers: Record<string, string> = {}): void {
    this.raw.writeHead(status, { "content-type": "application/json", ...headers });
    this.raw.end(JSON.stringify(body));
  }
  startStream(): void {
    const headers: Record<string, string> = { "content-type": "text/event-stream" };
    if (this.wantsGzip) headers["content-encoding"] = "gzip";
    this.raw.writeHead(200, headers);
    if (this.wantsGzip) {
      this.gzip = createGzip({ flush: constants.Z_SYNC_FLUSH });
      this.gzip.pipe(this.raw);
    }
  }
  write(text: string): void {
    if (this.gzip) this.gzip.write(text);
    else this.raw.write(text);
  }
  end(): void {
    if (this.gzip) this.gzip.end();
    else this.raw.end();
  }
  /** Kills the connection mid-response. */
  drop(): void {
    setTimeout(() => this.raw.socket?.destroy(), 20);
  }
}

type Handler = (req: StubRequest, reply: Reply) => void | Promise<void>;

const servers: { close(): void }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

async function stub(handler: Handler): Promise<{ url: string; requests: StubRequest[] }> {
  const requests: StubRequest[] = [];
  const server = createServer(async (req, res) => {
    for await (const _ of req) {
      // drain the body
    }
    const url = new URL(req.url ?? "/", "http://stub");
    const request = {
      method: req.method ?? "GET",
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
    };
    requests.push(request);
    await handler(request, new Reply(res, /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""))));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  servers.push({
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

function frame(id: number, type: string, spid?: number): string {
  const event = {
    id,
    ts: new Date(0).toISOString(),
    type,
    data: { n: id },
    ...(spid === undefined ? {} : { spid }),
  };
  return `id: ${id}\nevent: ${type}\ndata: ${JSON.stringify(event)}\n\n`;
}

const OP = "11111111-2222-4333-8444-555555555555";
const LOG = [frame(0, "init", 0), frame(1, "spawn", 1), frame(2, "stdout", 1), frame(3, "stdout", 1)]
  .concat([frame(4, "stderr", 1), frame(5, "exit", 1), frame(6, "completion", 0)])
  .map((text, id) => ({ id, text }));

function client(url: string): ContreeClient {
  return new ContreeClient({
    baseUrl: url,
    token: "t",
    retry: { baseDelayMs: 5, maxDelayMs: 20, maxAttempts: 5 },
    poll: { initialMs: 5, maxMs: 20 },
  });
}

/** Where the request asks to resume: after Last-Event-Id, else after `since`, else from the start. */
function cursorOf(req: StubRequest): number {
  const header = req.headers["last-event-id"];
  if (typeof header === "string") return Number(header);
  const since = req.query.get("since");
  return since === null ? -1 : Number(since);
}

async function collect(iterable: AsyncIterable<OperationEvent>): Promise<OperationEvent[]> {
  const out: OperationEvent[] = [];
  for await (const event of iterable) out.push(event);
  return out;
}

// ---- parser --------------------------------------------------------------------------------------

describe("SseParser", () => {
  test("LF, CRLF and CR line ends, comments, multi-line data, optional space", () => {
    const p = new SseParser();
    const text = ": keepalive\n\nid: 1\r\nevent: a\r\ndata: x\r\ndata:y\r\n\r\nid:2\rdata: z\r\r";
    const frames = [...p.push(text), ...p.end()];
    expect(frames).toEqual([
      { id: "1", event: "a", data: "x\ny" },
      { id: "2", event: null, data: "z" },
    ]);
  });

  test("frames split anywhere across chunks, including inside CRLF", () => {
    const text = 'id: 7\r\nevent: stdout\r\ndata: {"a":1}\r\n\r\n: ping\r\n\r\nid: 8\ndata: b\n\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const p = new SseParser();
      const frames = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut)), ...p.end()];
      expect(frames).toEqual([
        { id: "7", event: "stdout", data: '{"a":1}' },
        { id: "8", event: null, data: "b" },
      ]);
    }
  });

  test("an unterminated frame at the end is dropped (a truncated stream)", () => {
    const p = new SseParser();
    expect(p.push("id: 1\ndata: whole\n\nid: 2\ndata: half")).toHaveLength(1);
    expect(p.end()).toEqual([]);
  });

  test("field without colon, unknown fields and retry are ignored", () => {
    const p = new SseParser();
    expect(p.push("retry: 100\nfoo: bar\ndata\n\n")).toEqual([{ id: null, event: null, data: "" }]);
  });
});

// ---- streaming -----------------------------------------------------------------------------------

describe("readSseFrames", () => {
  test("frames arrive while the gzip stream is still open (per-chunk decoding)", async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const s = await stub(async (_req, reply) => {
      reply.startStream();
      reply.write(frame(0, "init"));
      await released; // the second frame is only sent once the client has read the first
      reply.write(frame(1, "spawn"));
      reply.end();
    });
    const res = await fetch(`${s.url}/x`, { headers: { "Accept-Encoding": "gzip" } });
    expect(res.headers.get("content-encoding")).toBe("gzip");
    const ids: (string | null)[] = [];
    for await (const f of readSseFrames(res.body!)) {
      ids.push(f.id);
      if (f.id === "0") release();
    }
    expect(ids).toEqual(["0", "1"]);
  });
});

// ---- resuming iterator ---------------------------------------------------------------------------

describe("resuming events", () => {
  test("drop, sse_error and truncation are resumed with Last-Event-Id: every event once, in order", async () => {
    let connection = 0;
    const s = await stub((req, reply) => {
      if (req.path !== `/v1/operations/${OP}/events`)
        return reply.json(200, { uuid: OP, status: "EXECUTING" });
      connection++;
      const from = cursorOf(req) + 1;
      reply.startStream();
      const send = (to: number) => {
        for (const e of LOG.slice(from, to)) reply.write(e.text);
      };
      if (connection === 1) {
        send(2); // 0, 1 then the connection dies
        reply.drop();
      } else if (connection === 2) {
        send(4); // 2, 3 then an in-band error
        reply.write("event: sse_error\ndata: upstream closed\n\n");
        reply.end();
      } else if (connection === 3) {
        send(5); // 4, then half a frame and a clean close
        reply.write(LOG[5]!.text.slice(0, 20));
        reply.end();
      } else {
        send(LOG.length);
        reply.end();
      }
    });
    const events = await collect(client(s.url).events(OP, { follow: true }));
    expect(events.map((e) => e.id)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(events.at(-1)?.type).toBe("completion");
    const eventRequests = s.requests.filter((r) => r.path.endsWith("/events"));
    expect(eventRequests.map((r) => r.headers["last-event-id"] ?? null)).toEqual([null, "1", "3", "4"]);
    expect(eventRequests.every((r) => r.query.get("follow") === "1")).toBe(true);
    // the truncated follow stream made the client ask whether the operation had ended
    expect(s.requests.some((r) => r.path === `/v1/operations/${OP}`)).toBe(true);
  });

  test("duplicates replayed by the server are dropped", async () => {
    const s = await stub((req, reply) => {
      if (req.path.endsWith("/events")) {
        reply.startStream();
        for (const e of [...LOG.slice(0, 3), ...LOG.slice(1)]) reply.write(e.text); // ignores the cursor
        reply.end();
      } else reply.json(200, { uuid: OP, status: "EXECUTING" });
    });
    const events = await collect(client(s.url).events(OP, { follow: true }));
    expect(events.map((e) => e.id)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  test("without follow the replay ends at the server's close", async () => {
    const s = await stub((_req, reply) => {
      reply.startStream();
      for (const e of LOG.slice(0, 3)) reply.write(e.text);
      reply.end();
    });
    const events = await collect(client(s.url).events(OP));
    expect(events.map((e) => e.id)).toEqual([0, 1, 2]);
    expect(s.requests).toHaveLength(1);
    expect(s.requests[0]!.query.get("follow")).toBeNull();
  });

  test("a spid-filtered follow stream ends once the operation is terminal (final drain without follow)", async () => {
    const s = await stub((req, reply) => {
      if (req.path.endsWith("/events")) {
        reply.startStream();
        const mine = LOG.filter((e) => e.id >= 1 && e.id <= 5).filter((e) => e.id > cursorOf(req));
        for (const e of mine) reply.write(e.text);
        reply.end();
      } else reply.json(200, { uuid: OP, status: "SUCCESS" });
    });
    const events = await collect(client(s.url).events(OP, { follow: true, spid: 1, since: 0 }));
    expect(events.map((e) => e.id)).toEqual([1, 2, 3, 4, 5]);
    const eventRequests = s.requests.filter((r) => r.path.endsWith("/events"));
    expect(eventRequests).toHaveLength(2);
    expect(eventRequests[0]!.query.get("since")).toBe("0");
    expect(eventRequests[0]!.query.get("spid")).toBe("1");
    expect(eventRequests[1]!.query.get("follow")).toBeNull();
    expect(eventRequests[1]!.headers["last-event-id"]).toBe("5");
  });

  test("410 with Retry-After on connect is retried", async () => {
    let n = 0;
    const s = await stub((_req, reply) => {
      if (++n === 1)
        return reply.json(410, { error: "log not durable yet", status: 410 }, { "retry-after": "0" });
      reply.startStream();
      for (const e of LOG) reply.write(e.text);
      reply.end();
    });
    const events = await collect(client(s.url).events(OP, { follow: true }));
    expect(events).toHaveLength(LOG.length);
    expect(s.requests).toHaveLength(2);
  });

  for (const status of [400, 404, 405, 406]) {
    test(`${status} on the events route means "unavailable"; waitForOperation polls instead`, async () => {
      let polls = 0;
      const s = await stub((req, reply) => {
        if (req.path.endsWith("/events")) return reply.json(status, { error: "no events" });
        polls++;
        reply.json(200, { uuid: OP, status: polls < 3 ? "EXECUTING" : "SUCCESS" });
      });
      const c = client(s.url);
      expect(collect(c.events(OP, { follow: true }))).rejects.toBeInstanceOf(ContreeEventsUnavailableError);
      const op = await c.waitForOperation(OP);
      expect(op.status).toBe("SUCCESS");
      expect(polls).toBe(3);
    });
  }

  test("425 outlasting the transport's retries is waited out while the operation is live", async () => {
    let n = 0;
    const s = await stub((req, reply) => {
      if (!req.path.endsWith("/events")) return reply.json(200, { uuid: OP, status: "PENDING" });
      if (++n <= 12) return reply.json(425, { error: "not yet" }, { "retry-after": "0" });
      reply.startStream();
      for (const e of LOG) reply.write(e.text);
      reply.end();
    });
    const events = await collect(client(s.url).events(OP, { follow: true }));
    expect(events).toHaveLength(LOG.length);
    expect(s.requests.filter((r) => r.path.endsWith("/events"))).toHaveLength(13);
  });

  test("425 for an operation that already ended (no log will come) means unavailable", async () => {
    const s = await stub((req, reply) => {
      if (req.path.endsWith("/events")) return reply.json(425, { error: "not yet" }, { "retry-after": "0" });
      reply.json(200, { uuid: OP, status: "CANCELLED" });
    });
    const c = client(s.url);
    expect(collect(c.events(OP, { follow: true }))).rejects.toBeInstanceOf(ContreeEventsUnavailableError);
    expect((await c.waitForOperation(OP)).status).toBe("CANCELLED");
  });

  test("a malformed event is a protocol error, not retried", async () => {
    const s = await stub((_req, reply) => {
      reply.startStream();
      reply.write("id: 0\ndata: not json\n\n");
      reply.end();
    });
    expect(collect(client(s.url).events(OP, { follow: true }))).rejects.toBeInstanceOf(ContreeProtocolError);
    await Bun.sleep(50);
    expect(s.requests).toHaveLength(1);
  });

  test("aborting while the stream is idle ends the iterator with ContreeAbortedError", async () => {
    const s = await stub((_req, reply) => {
      reply.startStream();
      reply.write(LOG[0]!.text); // then silence
    });
    const ac = new AbortController();
    const seen: number[] = [];
    const run = (async () => {
      for await (const e of client(s.url).events(OP, { follow: true, signal: ac.signal })) {
        seen.push(e.id);
        ac.abort();
      }
    })();
    expect(run).rejects.toBeInstanceOf(ContreeAbortedError);
    await run.catch(() => {});
    expect(seen).toEqual([0]);
  });
});
