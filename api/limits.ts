// Request limits: the in-process rate limiter (fixed windows, swept as they expire) and the body cap.
// With REDIS_URL/Upstash the same RateLimiter port is served by a shared counter (later issue).
import type { RateLimiter } from "../resolvers/context.ts";
import { AppError } from "../resolvers/errors.ts";

export function createMemoryRateLimiter(): RateLimiter {
  const windows = new Map<string, { count: number; resetAt: number }>();
  let lastSweep = Date.now();

  const sweep = (now: number) => {
    if (now - lastSweep < 10_000) return;
    lastSweep = now;
    for (const [key, w] of windows) if (w.resetAt <= now) windows.delete(key);
  };

  return {
    async consume(key, limit, windowMs) {
      const now = Date.now();
      sweep(now);
      let w = windows.get(key);
      if (!w || w.resetAt <= now) {
        w = { count: 0, resetAt: now + windowMs };
        windows.set(key, w);
      }
      w.count++;
      return { ok: w.count <= limit, retryAfterMs: Math.max(0, w.resetAt - now) };
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
