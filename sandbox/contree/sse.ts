// Server-Sent Events for the operation log (contree-api.md §2.5): an incremental frame parser and a
// resuming event iterator. The iterator remembers the last delivered event id and reconnects with
// `Last-Event-Id` (and `since`) after a dropped connection, a stream that ends early, or an
// in-band `event: sse_error`, so each event is delivered exactly once and in order. A stream that
// stalls (no bytes, not even `: keepalive`, for the client's streamIdleMs) is reconnected the same way.

import { bodyReadError } from "./body.ts";
import {
  ContreeAbortedError,
  ContreeError,
  ContreeEventsUnavailableError,
  ContreeNetworkError,
  ContreeProtocolError,
  ContreeStreamStalledError,
  ContreeTooEarlyError,
} from "./errors.ts";
import { backoffDelayMs, type ResolvedRetry, sleep } from "./retry.ts";
import { describe } from "./transport.ts";
import type { OperationEvent } from "./types.ts";

export interface SseFrame {
  /** The `id:` field of this frame, when it had one. */
  id: string | null;
  /** `event:` field; null means the default "message". */
  event: string | null;
  /** `data:` lines joined with "\n". */
  data: string;
}

const MAX_PENDING_CHARS = 16 * 1024 * 1024;

/**
 * Incremental text/event-stream parser (WHATWG rules): LF, CRLF and CR line ends, comment lines
 * (`: keepalive`), multi-line data, one optional space after the colon. Feed decoded text with
 * `push`; a frame is emitted on its blank line. Text left at `end` is an incomplete frame: dropped.
 */
export class SseParser {
  private buffer = "";
  private id: string | null = null;
  private event: string | null = null;
  private data: string[] = [];
  private dirty = false;
  private pendingChars = 0;

  push(text: string): SseFrame[] {
    this.buffer += text;
    const frames: SseFrame[] = [];
    let start = 0;
    for (;;) {
      const lf = this.buffer.indexOf("\n", start);
      const cr = this.buffer.indexOf("\r", start);
      let end: number;
      let next: number;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        // A CR at the very end may be the first half of a CRLF split across chunks: wait.
        if (cr === this.buffer.length - 1) break;
        end = cr;
        next = this.buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
      } else if (lf !== -1) {
        end = lf;
        next = lf + 1;
      } else {
        break;
      }
      const frame = this.line(this.buffer.slice(start, end));
      if (frame) frames.push(frame);
      start = next;
    }
    this.buffer = this.buffer.slice(start);
    if (this.buffer.length + this.pendingChars > MAX_PENDING_CHARS) {
      throw new ContreeProtocolError(`SSE frame larger than ${MAX_PENDING_CHARS} characters`);
    }
    return frames;
  }

  /** End of input: a trailing lone CR still ends its line, but an unterminated frame is dropped. */
  end(): SseFrame[] {
    const frames = this.buffer.endsWith("\r") ? this.push("\n") : [];
    this.buffer = "";
    this.reset();
    return frames;
  }

  private line(line: string): SseFrame | null {
    if (line === "") {
      if (!this.dirty) return null;
      const frame = { id: this.id, event: this.event, data: this.data.join("\n") };
      this.reset();
      return frame;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "id":
        if (!value.includes("\0")) this.id = value;
        break;
      case "event":
        this.event = value;
        break;
      case "data":
        this.data.push(value);
        this.pendingChars += value.length;
        break;
      default:
        // `retry` and unknown fields are ignored
        return null;
    }
    this.dirty = true;
    return null;
  }

  private reset(): void {
    this.id = null;
    this.event = null;
    this.data = [];
    this.dirty = false;
    this.pendingChars = 0;
  }
}

/**
 * Reads frames from a byte stream as they arrive (chunk by chunk, never buffering the whole body).
 * Throws ContreeAbortedError when the signal fires; other read failures as typed ContreeErrors
 * (see body.ts: ContreeTruncatedError, ContreeStreamStalledError…).
 */
export async function* readSseFrames(
  body: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
): AsyncGenerator<SseFrame, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  const onAbort = () => {
    reader.cancel(signal?.reason).catch(() => {});
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      if (signal?.aborted) throw new ContreeAbortedError(signal.reason);
      const chunk = await reader.read().catch((err: unknown) => {
        throw bodyReadError(err, { signal });
      });
      if (signal?.aborted) throw new ContreeAbortedError(signal.reason);
      if (chunk.done) {
        yield* parser.push(decoder.decode());
        yield* parser.end();
        return;
      }
      yield* parser.push(decoder.decode(chunk.value, { stream: true }));
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.cancel().catch(() => {});
  }
}

const KNOWN_EVENT_TYPES: ReadonlySet<string> = new Set([
  "message", // frames without an event: line carry the event JSON too
  "init",
  "spawn",
  "stdin",
  "stdout",
  "stderr",
  "exit",
  "truncated",
  "size_cap",
  "network",
  "shutdown",
  "completion",
]);

/** Statuses of the events route that mean "no event log here: poll the operation instead". */
export const EVENTS_UNAVAILABLE_STATUSES: ReadonlySet<number> = new Set([400, 404, 405, 406]);

/** Decodes one frame's JSON payload into an event; frames without data yield null. */
export function decodeEventFrame(frame: SseFrame): OperationEvent | null {
  if (frame.data === "") return null;
  let payload: unknown;
  try {
    payload = JSON.parse(frame.data);
  } catch (err) {
    throw new ContreeProtocolError(`SSE event is not JSON: ${frame.data.slice(0, 120)}`, { cause: err });
  }
  if (!payload || typeof payload !== "object" || Array.isArray(payload)) {
    throw new ContreeProtocolError("SSE event is not a JSON object");
  }
  const event = payload as Record<string, unknown>;
  if (typeof event.id !== "number" && frame.id !== null && /^\d+$/.test(frame.id)) {
    event.id = Number(frame.id);
  }
  if (typeof event.id !== "number") throw new ContreeProtocolError("SSE event has no numeric id");
  if (typeof event.type !== "string") event.type = frame.event ?? "message";
  return event as OperationEvent;
}

export interface ResumingEventsOptions {
  /**
   * Opens the stream. `cursor` is the last delivered event id (null before any); `follow` may turn
   * false for a final drain. Throws typed errors (the transport already retried 410/425/429/5xx).
   */
  connect(cursor: number | null, follow: boolean): Promise<ReadableStream<Uint8Array>>;
  follow: boolean;
  /** Start strictly after this id. */
  since?: number | undefined;
  /** End after the `completion` event (true when following without a spid filter). */
  stopAtCompletion: boolean;
  /**
   * Asked when a follow stream ends without `completion`: if the operation is terminal the
   * iterator drains the retained log once without `follow` and ends; otherwise it reconnects.
   */
  isTerminal?: () => Promise<boolean>;
  retry: ResolvedRetry;
  signal?: AbortSignal | undefined;
}

type StreamEnd = "eof" | "completion" | "sse_error" | "dropped" | "stalled";

/**
 * Yields operation events exactly once and in order across reconnects. Throws
 * ContreeEventsUnavailableError when the route answers 400/404/405/406 (or 425 for an operation
 * that already ended), ContreeAbortedError on abort, and the last failure after
 * `retry.maxAttempts` consecutive reconnects without progress. A 425 on a live operation is
 * waited out for as long as it lasts (bound it with the signal).
 */
export async function* resumingEvents(options: ResumingEventsOptions): AsyncGenerator<OperationEvent, void> {
  const { signal, retry } = options;
  let cursor: number | null = options.since ?? null;
  let follow = options.follow;
  let fruitless = 0;
  for (;;) {
    let body: ReadableStream<Uint8Array>;
    try {
      body = await options.connect(cursor, follow);
    } catch (err) {
      if (err instanceof ContreeError && err.status !== null && EVENTS_UNAVAILABLE_STATUSES.has(err.status)) {
        throw new ContreeEventsUnavailableError(err);
      }
      // 425 outlasting the transport's retries: the log does not exist yet (the operation may be
      // queued in PENDING for a long time). Keep waiting while the operation is live; a terminal
      // operation without a log (cancelled before it started) has no events to give.
      if (err instanceof ContreeTooEarlyError && options.isTerminal) {
        if (await options.isTerminal()) throw new ContreeEventsUnavailableError(err);
        await sleep(err.retryAfterMs ?? retry.maxDelayMs, signal);
        continue;
      }
      throw err;
    }
    let end: StreamEnd = "eof";
    let progressed = false;
    let lastFailure: unknown = null;
    try {
      for await (const frame of readSseFrames(body, signal)) {
        if (frame.event === "sse_error") {
          end = "sse_error";
          lastFailure = new ContreeNetworkError(`event stream error: ${frame.data}`);
          break;
        }
        let event: OperationEvent | null;
        try {
          event = decodeEventFrame(frame);
        } catch (err) {
          // A frame of a type we do not know may carry anything (a heartbeat, a future kind of
          // notice): it is skipped. A malformed frame of a known type is a protocol error.
          if (err instanceof ContreeProtocolError && !KNOWN_EVENT_TYPES.has(frame.event ?? "message"))
            continue;
          throw err;
        }
        if (!event) continue;
        if (cursor !== null && event.id <= cursor) continue; // already delivered
        cursor = event.id;
        progressed = true;
        yield event;
        if (options.stopAtCompletion && event.type === "completion") {
          end = "completion";
          break;
        }
      }
    } catch (err) {
      if (err instanceof ContreeAbortedError || err instanceof ContreeProtocolError) throw err;
      if (signal?.aborted) throw new ContreeAbortedError(signal.reason);
      end = err instanceof ContreeStreamStalledError ? "stalled" : "dropped";
      lastFailure = err;
    }
    if (end === "completion") return;
    if (end === "stalled" && follow && options.isTerminal) {
      // Silence is no failure of the operation: if it is over, drain the retained log once; if it
      // still runs, the service just answered, so reconnecting is not a fruitless attempt.
      if (await options.isTerminal()) follow = false;
      continue;
    }
    if (end === "eof") {
      if (!follow) return;
      // A follow stream closed before `completion`: either truncated, or the operation is over
      // (always the case with a spid filter, which hides `completion`).
      if (options.isTerminal && (await options.isTerminal())) {
        follow = false;
        continue;
      }
      lastFailure = new ContreeNetworkError("event stream ended before completion");
    }
    fruitless = progressed ? 0 : fruitless + 1;
    if (fruitless >= retry.maxAttempts) {
      if (lastFailure instanceof ContreeError) throw lastFailure;
      throw new ContreeNetworkError(`event stream keeps failing: ${describe(lastFailure)}`, {
        cause: lastFailure,
      });
    }
    await sleep(progressed ? 0 : backoffDelayMs(retry, fruitless), signal);
  }
}
