// Reading response bodies safely: every failure while a body is read becomes a typed ContreeError
// (a truncated gzip stream or a connection that closed mid-body is ContreeTruncatedError, not the
// runtime's bare TypeError), and a streamed body that goes silent for longer than its idle bound ends
// with ContreeStreamStalledError instead of hanging its reader forever.
//
// The idle clock runs only while the consumer waits for the next chunk, so a slow consumer (hashing
// a large archive) never counts as a stalled server. The event stream's `: keepalive` comments are
// bytes too: a live but quiet operation does not stall.

import {
  ContreeAbortedError,
  ContreeError,
  ContreeNetworkError,
  ContreeStreamStalledError,
  ContreeTruncatedError,
} from "./errors.ts";

export interface BodyContext {
  requestMethod?: string | null;
  requestPath?: string | null;
  /** The caller's signal: a read that fails after it fired is an abort, not a network failure. */
  signal?: AbortSignal | undefined;
}

/** Error codes runtimes give a body that ended early: Bun/undici/Node names for resets and closes. */
const CONNECTION_CODES = new Set([
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ERR_STREAM_PREMATURE_CLOSE",
  "UND_ERR_SOCKET",
  "UND_ERR_ABORTED",
]);

function codesOf(err: unknown): string[] {
  const codes: string[] = [];
  // The cause chain: undici wraps the zlib or socket error in a TypeError("terminated").
  for (let e = err, depth = 0; e && typeof e === "object" && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") codes.push(code);
    e = (e as { cause?: unknown }).cause;
  }
  return codes;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The typed error for a failure while reading a successful response's body.
 * Bun reports a gzip stream without its trailer as `TypeError` with code `ZlibError`, and a
 * connection closed mid-body as code `ECONNRESET`; Node (undici) as `TypeError: terminated` whose
 * cause has a `Z_…` or socket code.
 */
export function bodyReadError(err: unknown, context: BodyContext = {}): ContreeError {
  if (err instanceof ContreeError) return err;
  if (context.signal?.aborted) return new ContreeAbortedError(context.signal.reason);
  const where = `${context.requestMethod ?? "?"} ${context.requestPath ?? "?"}`;
  const init = { requestMethod: context.requestMethod, requestPath: context.requestPath, cause: err };
  const codes = codesOf(err);
  const message = messageOf(err);
  if (codes.some((c) => c === "ZlibError" || c.startsWith("Z_")) || /zlib|gzip|decompress/i.test(message)) {
    return new ContreeTruncatedError(
      "compression",
      `${where}: response body is truncated (its gzip stream ended early or is corrupt): ${message}`,
      init,
    );
  }
  if (
    codes.some((c) => CONNECTION_CODES.has(c)) ||
    /closed unexpectedly|premature close|terminated|socket hang up/i.test(message)
  ) {
    return new ContreeTruncatedError(
      "connection",
      `${where}: response body is truncated (the connection closed mid-body): ${message}`,
      init,
    );
  }
  return new ContreeNetworkError(`${where}: response body failed: ${message}`, init);
}

export interface GuardOptions extends BodyContext {
  /** Longest wait for the next chunk while the consumer is reading. */
  idleMs: number;
  /** Called once when the body fails or stalls, to release the connection (abort its fetch). */
  onFail?: (error: ContreeError) => void;
}

/**
 * Wraps a response body: chunks pass through unchanged; a read that fails rejects with a typed
 * error; a read that waits longer than `idleMs` cancels the body and rejects with
 * ContreeStreamStalledError. Cancelling the wrapper cancels the body.
 */
export function guardBody(
  source: ReadableStream<Uint8Array>,
  options: GuardOptions,
): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  const fail = (controller: ReadableStreamDefaultController<Uint8Array>, error: ContreeError) => {
    reader.cancel(error).catch(() => {});
    options.onFail?.(error);
    controller.error(error);
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const stalled = new Promise<"stalled">((resolve) => {
          timer = setTimeout(() => resolve("stalled"), options.idleMs);
        });
        try {
          const next = await Promise.race([reader.read(), stalled]);
          if (next === "stalled") {
            const where = `${options.requestMethod ?? "?"} ${options.requestPath ?? "?"}`;
            fail(
              controller,
              new ContreeStreamStalledError(
                options.idleMs,
                `${where}: the stream sent nothing for ${options.idleMs} ms`,
                { requestMethod: options.requestMethod, requestPath: options.requestPath },
              ),
            );
          } else if (next.done) controller.close();
          else controller.enqueue(next.value);
        } catch (err) {
          fail(controller, bodyReadError(err, options));
        } finally {
          clearTimeout(timer);
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    // Nothing is read ahead of the consumer: the idle clock measures the server, not the reader.
    { highWaterMark: 0 },
  );
}
