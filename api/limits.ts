// Request limits: rate limiters (fixed windows) in process or shared through Redis/Upstash, the
// per-user and per-API-key request limit applied where requests are authenticated, and the body cap.
import { type Bus, topics } from "../bus/bus.ts";
import { lua, type RedisCommands } from "../bus/redis-commands.ts";
import { streamKey } from "../bus/stream-bus.ts";
import { toNumber } from "../bus/stream-ids.ts";
import type { Logger, RateLimiter, Viewer } from "../resolvers/context.ts";
import { AppError, rateLimited } from "../resolvers/errors.ts";

export function createMemoryRateLimiter(): RateLimiter {
  const windows = new Map<string, { count: number; resetAt: number }>();
  let lastSweep = Date.now();

  const sweep = (now: number) => {
    if (now - lastSweep < 10_000) return;
    lastSweep = now;
    for (const [key, w] of windows) if (w.resetAt <= now) windows.delete(key);
  };

  const consume = (key: string, limit: number, windowMs: number, now: number) => {
    let w = windows.get(key);
    if (!w || w.resetAt <= now) {
      w = { count: 0, resetAt: now + windowMs };
      windows.set(key, w);
    }
    w.count++;
    return { ok: w.count <= limit, retryAfterMs: Math.max(0, w.resetAt - now) };
  };

  return {
    async consume(key, limit, windowMs) {
      const now = Date.now();
      sweep(now);
      return consume(key, limit, windowMs, now);
    },
    async consumeAll(hits) {
      const now = Date.now();
      sweep(now);
      return verdict(hits.map((hit) => consume(hit.key, hit.limit, hit.windowMs, now)));
    },
  };
}

/** ok only when every counter is within its limit; the wait is the longest among those over it. */
function verdict(results: { ok: boolean; retryAfterMs: number }[]): { ok: boolean; retryAfterMs: number } {
  let ok = true;
  let retryAfterMs = 0;
  for (const result of results)
    if (!result.ok) {
      ok = false;
      retryAfterMs = Math.max(retryAfterMs, result.retryAfterMs);
    }
  return { ok, retryAfterMs };
}

/**
 * KEYS: counters, then streams to report on; ARGV: the number of counters, then each one's window (ms).
 * One INCR per counter, its window started by the first hit (PEXPIRE; re-armed if an expiry was ever
 * lost). Returns {count, ms left, ...} then each stream's latest id ('' when it has none). A script
 * rather than @upstash/ratelimit: its 2.1+ scripts start with a shebang that stock Redis 7.0 refuses,
 * and this is all a fixed window needs.
 */
const CONSUME = lua(`
local out = {}
local counters = tonumber(ARGV[1])
for i = 1, counters do
  local count = redis.call('INCR', KEYS[i])
  local left = redis.call('PTTL', KEYS[i])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[i + 1])
    left = tonumber(ARGV[i + 1])
  end
  out[#out + 1] = count
  out[#out + 1] = left
end
for i = counters + 1, #KEYS do
  local last = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)
  out[#out + 1] = #last > 0 and last[1][1] or ''
end
return out
`);

/**
 * The same fixed windows counted in Redis/Upstash, so every instance counts against one limit: one
 * atomic script (one round trip, one billed command) per call, however many counters it touches. When
 * the store cannot be reached the call fails with UNAVAILABLE (callers choose to fail open or closed).
 */
export function createSharedRateLimiter(commands: RedisCommands, prefix: string): RateLimiter {
  const consumeAll: RateLimiter["consumeAll"] = async (hits, options = {}) => {
    const watch = options.watch ?? [];
    let reply: unknown[];
    try {
      reply = (await commands.script(
        CONSUME,
        [...hits.map((hit) => `${prefix}rl:${hit.key}`), ...watch.map((topic) => streamKey(prefix, topic))],
        [hits.length, ...hits.map((hit) => hit.windowMs)],
      )) as unknown[];
    } catch {
      throw new AppError("UNAVAILABLE", "Rate limits cannot be checked right now; retry shortly", {
        retryAfterSeconds: 1,
      });
    }
    const result = verdict(
      hits.map((hit, i) => ({
        ok: Number(reply[2 * i]) <= hit.limit,
        retryAfterMs: Number(reply[2 * i + 1]),
      })),
    );
    if (watch.length === 0) return result;
    const latest: Record<string, number> = {};
    watch.forEach((topic, i) => {
      const id = String(reply[2 * hits.length + i] ?? "");
      if (id) latest[topic] = toNumber(id);
    });
    return { ...result, latest };
  };
  return {
    consume: (key, limit, windowMs) => consumeAll([{ key, limit, windowMs }]),
    consumeAll,
  };
}

/** Topics whose events make a credential invalid (the authenticator's cache drops it on them). */
const REVOCATIONS = [topics.revokedCredentials, topics.tokensRevoked];

/**
 * The request limits of an authenticated caller: per user (all their credentials together) and, for an
 * API key, per key too; an HTTP request and a graphql-ws operation count alike, in the same counters.
 * RATE_LIMITED (HTTP 429 with Retry-After; over graphql-ws, that operation's error) past either. If the shared store is
 * down, requests go through (logged at most once a minute): a rate limit protects, it does not gate.
 *
 * With a shared store the same round trip says whether a revocation happened that this instance had
 * not applied when it authenticated the request (another instance revoked a key or signed a user out a
 * moment ago): then the check waits for its bus to deliver it and resolves false, and the caller
 * authenticates the request again. So a credential revoked on one instance is refused on every other
 * at once, not one bus delivery later. Call `before()` before authenticating and pass its result.
 */
export interface RequestLimiter {
  /** What this instance has applied of the revocation topics, taken before authenticating. */
  before(): Record<string, number> | undefined;
  /** Counts one request; RATE_LIMITED past a limit; false when the credential must be checked again. */
  check(viewer: Viewer, applied: Record<string, number> | undefined): Promise<boolean>;
}

export function createRequestLimiter(deps: {
  rateLimiter: RateLimiter;
  bus: Bus;
  perUser: number;
  perApiKey: number;
  log: Logger;
}): RequestLimiter {
  const { rateLimiter, bus, perUser, perApiKey, log } = deps;
  const shared = bus.waitFor !== undefined && bus.position !== undefined;
  let warnedAt = 0;
  return {
    before() {
      if (!shared) return undefined;
      const applied: Record<string, number> = {};
      for (const topic of REVOCATIONS) applied[topic] = bus.position!(topic) ?? 0;
      return applied;
    },
    async check(viewer, applied) {
      const hits = [{ key: `req:user:${viewer.userId}`, limit: perUser, windowMs: 60_000 }];
      if (viewer.credential.kind === "apiKey")
        hits.push({ key: `req:key:${viewer.credential.keyId}`, limit: perApiKey, windowMs: 60_000 });
      let result: Awaited<ReturnType<RateLimiter["consumeAll"]>>;
      try {
        result = await rateLimiter.consumeAll(hits, applied ? { watch: REVOCATIONS } : {});
      } catch (error) {
        if (Date.now() - warnedAt > 60_000) {
          warnedAt = Date.now();
          log.warn("request limits unavailable; letting requests through", { error: String(error) });
        }
        return true;
      }
      if (!result.ok) throw rateLimited(Math.max(1, Math.ceil(result.retryAfterMs / 1000)));
      if (!result.latest || !applied) return true;
      let behind = false;
      for (const [topic, id] of Object.entries(result.latest)) {
        if (id <= (applied[topic] ?? 0)) continue;
        behind = true;
        await bus.waitFor!(topic, id, 2000);
      }
      if (!behind) return true;
      // Delivered; the subscribers (the principal cache) act on it before the next task.
      await new Promise((resolve) => setImmediate(resolve));
      return false;
    },
  };
}

export const payloadTooLarge = (limit: number) =>
  new AppError("PAYLOAD_TOO_LARGE", `Request body exceeds ${limit} bytes`, { limitBytes: limit });

/**
 * Returns the request with its body read into memory, or throws PAYLOAD_TOO_LARGE as soon as more
 * than `limit` bytes arrive (a missing or lying Content-Length cannot get past it).
 */
export async function limitBody(request: Request, limit: number): Promise<Request> {
  if (!request.body) return request;
  const declared = Number(request.headers.get("content-length") ?? "NaN");
  if (declared > limit) throw payloadTooLarge(limit);
  // A declared length within the limit is a bound already: the HTTP server reads exactly that many
  // bytes, so the request passes through untouched (the hot path: no stream copy, no new Request).
  // Only chunked bodies, whose size nobody declared, are counted as they arrive.
  if (Number.isInteger(declared) && declared >= 0 && !request.headers.has("transfer-encoding"))
    return request;
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw payloadTooLarge(limit);
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new Request(request.url, {
    method: request.method,
    headers: request.headers,
    body,
    signal: request.signal,
  });
}
