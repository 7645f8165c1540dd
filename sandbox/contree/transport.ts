// The HTTP core of the ConTree client: builds /v1 URLs and headers, sends one request through
// fetch with the retry policy, and turns every failure into a typed ContreeError. Responses are
// read inside the retry loop, so a body that breaks off on an idempotent request is retried too.
// Streamed bodies (events, archives) are handed out guarded (body.ts): their read failures are
// typed and a silent stream ends after `streamIdleMs`.

import { bodyReadError, guardBody } from "./body.ts";
import {
  ContreeAbortedError,
  ContreeError,
  ContreeNetworkError,
  ContreeProtocolError,
  errorFromResponse,
} from "./errors.ts";
import {
  isIdempotentMethod,
  isRetryable,
  nextDelayMs,
  parseRetryAfter,
  type ResolvedRetry,
  sleep,
} from "./retry.ts";

export type HttpMethod = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";

export type QueryValue = string | number | boolean | null | undefined | readonly (string | number)[];

export interface RequestSpec {
  method: HttpMethod;
  /** Below /v1, e.g. `/images`. */
  path: string;
  query?: Record<string, QueryValue>;
  headers?: Record<string, string>;
  json?: unknown;
  body?: Uint8Array | ReadableStream<Uint8Array>;
  accept?: string;
  /** Replay safety for 410/5xx/network failures; defaults to the method's (GET, HEAD, PUT, DELETE). */
  idempotent?: boolean;
  redirect?: RequestRedirect;
  /** Statuses that count as success besides 2xx (e.g. 302 for the tag lookup, 404 for HEAD probes). */
  accept3xx4xx?: readonly number[];
  signal?: AbortSignal | undefined;
  /**
   * The response body is handed out as a stream (events, archives): instead of a per-attempt time
   * limit, the response headers must come within `requestTimeoutMs` and then every chunk within
   * `streamIdleMs` of the reader asking for it.
   */
  stream?: boolean;
}

export interface TransportOptions {
  baseUrl: string;
  token: string;
  project: string | null;
  userAgent: string;
  fetch: typeof fetch;
  retry: ResolvedRetry;
  /** Per attempt, for requests whose body is read whole: a half-open connection cannot hang a caller. */
  requestTimeoutMs?: number;
  /** Longest silence of a streamed body while its reader waits (default 30 s). */
  streamIdleMs?: number;
}

export const DEFAULT_STREAM_IDLE_MS = 30_000;

/** The `/v1`-prefixed path plus the encoded query. Booleans become `1` (or are omitted when false). */
export function buildPath(path: string, query?: Record<string, QueryValue>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (Array.isArray(value)) {
      for (const item of value) params.append(key, String(item));
    } else {
      params.append(key, value === true ? "1" : String(value));
    }
  }
  const qs = params.toString();
  return `/v1${path}${qs ? `?${qs}` : ""}`;
}

export class Transport {
  readonly options: TransportOptions;
  private readonly base: string;

  constructor(options: TransportOptions) {
    this.options = options;
    this.base = options.baseUrl.replace(/\/+$/, "");
  }

  url(pathWithQuery: string): string {
    return `${this.base}${pathWithQuery}`;
  }

  /**
   * Sends a request and hands a successful response to `read` (still inside the retry loop).
   * Non-success statuses, transport failures and aborts become typed errors.
   */
  async send<T>(spec: RequestSpec, read: (res: Response) => Promise<T>): Promise<T> {
    const { signal } = spec;
    const fullPath = buildPath(spec.path, spec.query);
    const errorPath = `/v1${spec.path}`;
    const replayableBody = !(spec.body instanceof ReadableStream);
    const idempotent = spec.idempotent ?? isIdempotentMethod(spec.method);
    const policy = this.options.retry;
    const started = Date.now();
    const headers = this.headers(spec);
    const body =
      spec.json !== undefined
        ? JSON.stringify(spec.json)
        : ((spec.body as BodyInit | undefined) ?? undefined);

    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw new ContreeAbortedError(signal.reason, { attempts: attempt - 1 });
      let failure: ContreeError;
      const timeoutMs = this.options.requestTimeoutMs ?? 60_000;
      // A stream's connection outlives this call: it is aborted by hand (headers too slow, or the
      // body failed or stalled), never by a timer running over the whole body.
      const streamAbort = spec.stream ? new AbortController() : null;
      const headersTimer = streamAbort
        ? setTimeout(
            () => streamAbort.abort(new DOMException("response headers timed out", "TimeoutError")),
            timeoutMs,
          )
        : undefined;
      try {
        const attemptSignal = AbortSignal.any([
          streamAbort ? streamAbort.signal : AbortSignal.timeout(timeoutMs),
          ...(signal ? [signal] : []),
        ]);
        const init: RequestInit & { duplex?: "half" } = {
          method: spec.method,
          headers,
          body,
          redirect: spec.redirect ?? "follow",
          signal: attemptSignal,
        };
        if (spec.body instanceof ReadableStream) init.duplex = "half";
        const doFetch = this.options.fetch; // called unbound: some runtimes reject fetch with a foreign `this`
        const res = await doFetch(this.url(fullPath), init);
        clearTimeout(headersTimer);
        if (res.ok || spec.accept3xx4xx?.includes(res.status)) {
          try {
            return await read(streamAbort ? this.guarded(res, spec, errorPath, streamAbort) : res);
          } catch (err) {
            throw this.wrapReadError(err, spec, errorPath);
          }
        }
        const text = spec.method === "HEAD" ? "" : await res.text().catch(() => "");
        failure = errorFromResponse(res.status, text, {
          retryAfterMs: parseRetryAfter(res.headers.get("retry-after")),
          requestMethod: spec.method,
          requestPath: errorPath,
        });
      } catch (err) {
        clearTimeout(headersTimer);
        if (signal?.aborted) throw new ContreeAbortedError(signal.reason, { attempts: attempt });
        failure =
          err instanceof ContreeError
            ? err
            : new ContreeNetworkError(`${spec.method} ${errorPath}: ${describe(err)}`, {
                requestMethod: spec.method,
                requestPath: errorPath,
                cause: err,
              });
      }
      failure.attempts = attempt;
      if (!replayableBody || !isRetryable(idempotent, failure)) throw failure;
      const delay = nextDelayMs(policy, attempt, Date.now() - started, failure.retryAfterMs);
      if (delay === null) throw failure;
      await sleep(delay, signal);
    }
  }

  /** Parses a JSON body; a malformed one is a protocol error (not retried). */
  async json<T>(spec: RequestSpec): Promise<T> {
    return this.send(spec, async (res) => {
      const text = await res.text();
      try {
        return JSON.parse(text) as T;
      } catch (err) {
        throw new ContreeProtocolError(`${spec.method} /v1${spec.path}: response is not JSON`, {
          status: res.status,
          error: text.slice(0, 200),
          requestMethod: spec.method,
          requestPath: `/v1${spec.path}`,
          cause: err,
        });
      }
    });
  }

  /** Sends and discards the body, returning the response (status and headers stay readable). */
  async empty(spec: RequestSpec): Promise<Response> {
    return this.send(spec, async (res) => {
      await res.arrayBuffer();
      return res;
    });
  }

  private headers(spec: RequestSpec): Headers {
    const h = new Headers(spec.headers);
    h.set("Authorization", `Bearer ${this.options.token}`);
    if (this.options.project) h.set("Project", this.options.project);
    h.set("Accept-Encoding", "gzip");
    h.set("User-Agent", this.options.userAgent);
    h.set("Accept", spec.accept ?? "application/json");
    if (spec.json !== undefined) h.set("Content-Type", "application/json");
    else if (spec.body !== undefined) h.set("Content-Type", "application/octet-stream");
    return h;
  }

  private wrapReadError(err: unknown, spec: RequestSpec, errorPath: string): ContreeError {
    return bodyReadError(err, { requestMethod: spec.method, requestPath: errorPath, signal: spec.signal });
  }

  /** The response with its body guarded: typed read failures, and an idle bound per chunk. */
  private guarded(
    res: Response,
    spec: RequestSpec,
    errorPath: string,
    connection: AbortController,
  ): Response {
    if (!res.body) return res;
    const body = guardBody(res.body, {
      idleMs: this.options.streamIdleMs ?? DEFAULT_STREAM_IDLE_MS,
      requestMethod: spec.method,
      requestPath: errorPath,
      signal: spec.signal,
      onFail: (error) => connection.abort(error),
    });
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  }
}

export function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return code ? `${err.message} (${String(code)})` : err.message;
  }
  return String(err);
}
