// The retry contract of the ConTree service (contree-api.md §2.9), as a pure policy plus an
// abortable sleep:
//   - 425 and 429 mean "rejected before any processing": safe to replay for ANY request, POST included.
//   - 410, 5xx and network failures are retried only for idempotent requests: a replayed POST
//     /instances could start a second VM, a replayed stdin write would duplicate input.
//   - Retry-After (seconds or HTTP date) is honoured as given; otherwise exponential backoff with
//     jitter, capped. Attempts and total elapsed time are bounded.

import { ContreeAbortedError, type ContreeError } from "./errors.ts";

export interface RetryOptions {
  /** Total attempts including the first (1 disables retries). Default 10. */
  maxAttempts?: number;
  /** First backoff delay. Default 100 ms. */
  baseDelayMs?: number;
  /** Backoff cap. Default 5000 ms. */
  maxDelayMs?: number;
  /** Give up when the next wait would end later than this after the first attempt. Default 120 s. */
  maxElapsedMs?: number;
  /** A Retry-After longer than this is not waited for: the error is thrown (with retryAfterMs). Default 60 s. */
  maxRetryAfterMs?: number;
  /** Fraction of each backoff delay that is randomised away (0 = none, 1 = full jitter). Default 0.5. */
  jitter?: number;
  /** Random source in [0, 1); injectable for tests. */
  random?: () => number;
}

export type ResolvedRetry = Required<RetryOptions>;

export const DEFAULT_RETRY: ResolvedRetry = {
  maxAttempts: 10,
  baseDelayMs: 100,
  maxDelayMs: 5000,
  maxElapsedMs: 120_000,
  maxRetryAfterMs: 60_000,
  jitter: 0.5,
  random: Math.random,
};

export function resolveRetry(options: RetryOptions | undefined): ResolvedRetry {
  const merged = { ...DEFAULT_RETRY, ...options };
  if (!Number.isInteger(merged.maxAttempts) || merged.maxAttempts < 1) {
    throw new RangeError("retry.maxAttempts must be an integer ≥ 1");
  }
  return merged;
}

/** Methods whose replay cannot have an extra effect (RFC 9110 §9.2.2). PATCH and POST are not. */
const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);

export function isIdempotentMethod(method: string): boolean {
  return IDEMPOTENT_METHODS.has(method.toUpperCase());
}

/** Statuses that mean the server rejected the request before doing anything. */
export const REJECTED_BEFORE_PROCESSING: ReadonlySet<number> = new Set([425, 429]);

/**
 * Whether a failed attempt may be replayed.
 * @param idempotent the request's replay safety (method default, or a per-operation override)
 * @param failure the typed error of the attempt
 */
export function isRetryable(idempotent: boolean, failure: ContreeError): boolean {
  if (failure.kind === "aborted" || failure.kind === "protocol") return false;
  // A body that broke off or went silent: the request may have had its effect, like a reset.
  if (failure.kind === "network" || failure.kind === "truncated" || failure.kind === "stream_stalled")
    return idempotent;
  const status = failure.status;
  if (status === null) return false;
  if (REJECTED_BEFORE_PROCESSING.has(status)) return true;
  if (status === 410 || status >= 500) return idempotent;
  return false;
}

/** Exponential backoff with jitter: attempt 1 → ~base, 2 → ~2·base… capped at maxDelayMs. */
export function backoffDelayMs(policy: ResolvedRetry, failedAttempts: number): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, failedAttempts - 1));
  return Math.max(0, exp * (1 - policy.jitter * policy.random()));
}

/**
 * The wait before the next attempt, or null to give up.
 * @param failedAttempts attempts made so far (≥ 1)
 * @param elapsedMs time since the first attempt started
 */
export function nextDelayMs(
  policy: ResolvedRetry,
  failedAttempts: number,
  elapsedMs: number,
  retryAfterMs: number | null,
): number | null {
  if (failedAttempts >= policy.maxAttempts) return null;
  let delay: number;
  if (retryAfterMs !== null) {
    if (retryAfterMs > policy.maxRetryAfterMs) return null;
    delay = retryAfterMs;
  } else {
    delay = backoffDelayMs(policy, failedAttempts);
  }
  if (elapsedMs + delay > policy.maxElapsedMs) return null;
  return delay;
}

/** Parses Retry-After: delta-seconds or an HTTP date; null when absent or unparsable. */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | null {
  if (value == null) return null;
  const text = value.trim();
  if (text === "") return null;
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const at = Date.parse(text);
  if (Number.isNaN(at)) return null;
  return Math.max(0, at - now);
}

/** Resolves after `ms`, or rejects with ContreeAbortedError as soon as the signal fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(new ContreeAbortedError(signal.reason));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new ContreeAbortedError(signal?.reason));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
