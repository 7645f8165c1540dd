// Unit tests of the ConTree retry contract: the pure policy (which failures replay, delays,
// Retry-After parsing, budgets) and the transport applying it against a scripted Bun.serve stub.
import { afterEach, describe, expect, test } from "bun:test";
import {
  ContreeAbortedError,
  ContreeClient,
  type ContreeError,
  ContreeNetworkError,
  ContreeServerError,
  ContreeTooManyRequestsError,
  errorFromResponse,
  isRetryable,
  nextDelayMs,
  parseRetryAfter,
  resolveRetry,
  sleep,
} from "../../sandbox/contree/index.ts";

const err = (status: number) =>
  errorFromResponse(status, "{}", { requestMethod: "GET", requestPath: "/v1/x" });
const network = new ContreeNetworkError("reset");

describe("policy", () => {
  test("425/429 replay for any request; 410/5xx/network only when idempotent; others never", () => {
    for (const idempotent of [true, false]) {
      expect(isRetryable(idempotent, err(425))).toBe(true);
      expect(isRetryable(idempotent, err(429))).toBe(true);
      for (const s of [410, 500, 502, 503, 504]) expect(isRetryable(idempotent, err(s))).toBe(idempotent);
      expect(isRetryable(idempotent, network)).toBe(idempotent);
      for (const s of [400, 401, 403, 404, 409, 422]) expect(isRetryable(idempotent, err(s))).toBe(false);
      expect(isRetryable(idempotent, new ContreeAbortedError(null))).toBe(false);
    }
  });

  test("Retry-After: seconds, HTTP date, garbage", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("3", now)).toBe(3000);
    expect(parseRetryAfter("0.5", now)).toBe(500);
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:10 GMT", now)).toBe(10_000);
    expect(parseRetryAfter("Wed, 31 Dec 2025 00:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeNull();
    expect(parseRetryAfter(null, now)).toBeNull();
    expect(err(429).retryAfterMs).toBeNull();
    const e = errorFromResponse(429, "slow down", { retryAfterMs: parseRetryAfter("2") });
    expect(e).toBeInstanceOf(ContreeTooManyRequestsError);
    expect(e.error).toBe("slow down"); // non-JSON bodies fall back to text
    expect(e.retryAfterMs).toBe(2000);
  });

  test("backoff grows, is capped and jittered; attempts, elapsed time and long Retry-After end it", () => {
    const p = resolveRetry({
      baseDelayMs: 100,
      maxDelayMs: 1000,
      jitter: 0,
      maxAttempts: 6,
      maxElapsedMs: 5000,
    });
    expect([1, 2, 3, 4, 5].map((n) => nextDelayMs(p, n, 0, null))).toEqual([100, 200, 400, 800, 1000]);
    expect(nextDelayMs(p, 6, 0, null)).toBeNull();
    expect(nextDelayMs(p, 1, 4950, null)).toBeNull();
    expect(nextDelayMs(p, 1, 0, 3000)).toBe(3000);
    expect(nextDelayMs(p, 1, 0, 120_000)).toBeNull();
    const jittered = resolveRetry({ baseDelayMs: 100, jitter: 0.5, random: () => 0.999 });
    expect(nextDelayMs(jittered, 1, 0, null)).toBeCloseTo(50.05, 1);
  });

  test("sleep rejects at once when aborted", async () => {
    const ac = new AbortController();
    const waiting = sleep(60_000, ac.signal);
    ac.abort(new Error("stop"));
    const e = await waiting.catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ContreeAbortedError);
    expect((e as ContreeError).cause).toBeInstanceOf(Error);
  });
});

// ---- transport against a stub --------------------------------------------------------------------

type Script = (req: Request, n: number) => Response | Promise<Response>;
const stops: (() => void)[] = [];
afterEach(() => {
  for (const stop of stops.splice(0)) stop();
});

function serve(script: Script): { client: ContreeClient; hits: { method: string; path: string }[] } {
  const hits: { method: string; path: string }[] = [];
  const server = Bun.serve({
    port: 0,
    fetch(req) {
      hits.push({ method: req.method, path: new URL(req.url).pathname });
      return script(req, hits.length);
    },
  });
  stops.push(() => server.stop(true));
  const client = new ContreeClient({
    baseUrl: `http://127.0.0.1:${server.port}`,
    token: "t",
    retry: { baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 5 },
  });
  return { client, hits };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  Response.json(body, { status, headers });

describe("transport", () => {
  test("a GET is retried through a 5xx storm", async () => {
    const { client, hits } = serve((_r, n) =>
      n < 4 ? json(503, { error: "busy" }) : json(200, { images: [] }),
    );
    expect(await client.listImages()).toEqual([]);
    expect(hits).toHaveLength(4);
  });

  test("a 5xx storm longer than the budget throws the last error with the attempt count", async () => {
    const { client, hits } = serve(() => json(500, { error: "down", traceback: ["a", "b"] }));
    const e = await client.whoami().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ContreeServerError);
    expect((e as ContreeError).attempts).toBe(5);
    expect((e as ContreeError).traceback).toEqual(["a", "b"]);
    expect(hits).toHaveLength(5);
  });

  test("POST /instances: 500 is not replayed, 429 and 425 are", async () => {
    const a = serve(() => json(500, { error: "boom" }));
    expect(a.client.spawn({ command: "true", image: "x" })).rejects.toBeInstanceOf(ContreeServerError);
    await Bun.sleep(20);
    expect(a.hits).toHaveLength(1);

    const b = serve((_r, n) =>
      n === 1
        ? json(429, { error: "slow" }, { "retry-after": "0" })
        : n === 2
          ? json(425, { error: "early" })
          : json(201, { uuid: "op-1" }, { location: "/v1/operations/op-1" }),
    );
    expect((await b.client.spawn({ command: "true", image: "x" })).uuid).toBe("op-1");
    expect(b.hits).toHaveLength(3);
  });

  test("a network error is retried for GET but not for POST stdin", async () => {
    // a real network error: nothing listens on the port any more
    const dead = new ContreeClient({ baseUrl: "http://127.0.0.1:9", token: "t", retry: { maxAttempts: 3 } });
    const e = await dead.writeStdin("op", 2, { value: "x" }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ContreeNetworkError);
    expect((e as ContreeError).attempts).toBe(1);
    const g = await dead.whoami().catch((x: unknown) => x);
    expect((g as ContreeError).attempts).toBe(3);
  });

  test("aborting during a Retry-After wait rejects at once", async () => {
    const { client, hits } = serve(() => json(429, { error: "later" }, { "retry-after": "30" }));
    const ac = new AbortController();
    const pending = client.whoami({ signal: ac.signal });
    while (hits.length === 0) await Bun.sleep(5);
    ac.abort();
    expect(pending).rejects.toBeInstanceOf(ContreeAbortedError);
    await pending.catch(() => {});
    expect(hits).toHaveLength(1);
  });

  test("headers: bearer token, Project when set, gzip, user agent", async () => {
    let seen: Headers | null = null;
    const server = Bun.serve({
      port: 0,
      fetch(req) {
        seen = req.headers;
        return json(200, { images: [] });
      },
    });
    stops.push(() => server.stop(true));
    const c = new ContreeClient({
      baseUrl: `http://127.0.0.1:${server.port}/`,
      token: "secret",
      project: "proj-1",
      userAgent: "ua/1",
    });
    await c.listImages({ tagged: true, limit: 5, since: new Date(0) });
    const h = seen as unknown as Headers;
    expect(h.get("authorization")).toBe("Bearer secret");
    expect(h.get("project")).toBe("proj-1");
    expect(h.get("accept-encoding")).toBe("gzip");
    expect(h.get("user-agent")).toBe("ua/1");
  });
});
