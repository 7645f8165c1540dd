// The per-operation event log (ids from 0, RFC 3339 `ts`, spid) and its SSE framing
// (`id:` / `event:` / `data:` with the whole event as JSON). Streams subscribe to be woken on new events.
import type { Clock } from "./clock.ts";

export interface OperationEvent {
  id: number;
  ts: string;
  spid?: number;
  type: string;
  data: unknown;
}

export class EventLog {
  readonly events: OperationEvent[] = [];
  /** Set once the `completion` event is in the log: nothing follows it. */
  completed = false;
  completedAt = 0;
  private listeners = new Set<() => void>();

  constructor(private clock: Clock) {}

  /** Appends an event (nothing is appended after the completion event). */
  emit(type: string, spid: number | undefined, data: unknown): OperationEvent | null {
    if (this.completed) return null;
    const event: OperationEvent =
      spid === undefined
        ? { id: this.events.length, ts: this.clock.iso(), type, data }
        : { id: this.events.length, ts: this.clock.iso(), spid, type, data };
    this.events.push(event);
    if (type === "completion") {
      this.completed = true;
      this.completedAt = this.clock.now();
    }
    for (const listener of [...this.listeners]) listener();
    return event;
  }

  /** Resolves on the next event (or after `timeoutMs`, whichever first). */
  waitForChange(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.listeners.add(done);
    });
  }

  /** Wakes every waiting stream (used on shutdown). */
  wakeAll(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

export function sseFrame(event: OperationEvent): string {
  return `id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

export interface StreamOptions {
  /** Resume strictly after this id (-1 = from the start). */
  since: number;
  spid: number | null;
  follow: boolean;
  keepaliveMs: number;
  fault: { afterEvents: number; mode: "drop" | "sse_error"; fired(): void } | null;
  isClosing(): boolean;
}

export interface EventSink {
  write(chunk: string): Promise<boolean>;
  destroy(): void;
  readonly closed: boolean;
}

/**
 * Writes the log as SSE: replay after `since`, then (with `follow`) new events as they come, with
 * `: keepalive` comments while idle, until the completion event. An armed stream fault cuts the
 * connection or sends `event: sse_error` after its number of events.
 */
export async function streamEvents(log: EventLog, out: EventSink, options: StreamOptions): Promise<void> {
  let next = Math.max(0, options.since + 1);
  let sent = 0;
  const faultDue = async (): Promise<boolean> => {
    const fault = options.fault;
    if (!fault || sent < fault.afterEvents) return false;
    fault.fired();
    if (fault.mode === "drop") out.destroy();
    else
      await out.write(
        "event: sse_error\ndata: injected failure: upstream event source closed unexpectedly\n\n",
      );
    return true;
  };
  if (await faultDue()) return;
  for (;;) {
    while (next < log.events.length) {
      const event = log.events[next++]!;
      if (options.spid !== null && event.spid !== options.spid) continue;
      if (!(await out.write(sseFrame(event)))) return;
      sent++;
      if (await faultDue()) return;
    }
    if (!options.follow || log.completed || out.closed || options.isClosing()) return;
    await log.waitForChange(options.keepaliveMs);
    if (out.closed || options.isClosing()) return;
    if (next >= log.events.length && !log.completed) {
      if (!(await out.write(": keepalive\n\n"))) return;
    }
  }
}
