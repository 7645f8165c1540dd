// The audit trail of a run: every event its live subscribers see (output chunks, agent events, the
// end) is stored in run_events, in batches while the run streams, so a finished run replays exactly
// what was streamed. A trail is bounded per run (events and bytes): the event that would take it over
// is replaced by a truncation marker, which live subscribers see too; what follows is streamed but not
// stored (the end always is). The batch holding the last events is committed before the end is
// published, so a subscriber that sees the end can read the whole trail.
//
// Joining the stored trail and the live stream without a gap: the runner keeps the events not yet
// committed in memory; `snapshot()` (synchronous) says which seq the database holds up to and hands
// over the rest. See resolvers/run.ts runOutput.
import { and, asc, eq, gt, lte } from "drizzle-orm";
import type { AgentEvent } from "../agent/events.ts";
import type { Db } from "../db/client.ts";
import { type RunRow, runEvents } from "../db/schema.ts";
import type { RunStreamEvent } from "./runner.ts";

export interface TrailLimits {
  /** Output chunks and agent events stored per run. */
  maxEvents: number;
  /** Their stored JSON, in bytes, per run. */
  maxBytes: number;
}

export const DEFAULT_TRAIL_LIMITS: TrailLimits = { maxEvents: 20_000, maxBytes: 8 * 1024 * 1024 };

/** A batch goes to the database after this long, or at once when it is this large. */
const FLUSH_MS = 250;
const BATCH_EVENTS = 200;
/** Rows read per query when a trail is replayed (a long trail streams; it is never loaded whole). */
const READ_PAGE = 500;

type Kind = RunStreamEvent["type"];
type Payload = Record<string, unknown>;

/** What a row keeps of an event: everything but its seq (the key) and the run id (the row's). */
function toRow(runId: string, event: RunStreamEvent) {
  const { type, seq, runId: _own, ...rest } = event as RunStreamEvent & { runId?: string };
  return { runId, seq, kind: type, payload: rest as Payload };
}

/** A stored row as the stream event it was. */
export function fromRow(row: { runId: string; seq: number; kind: string; payload: unknown }): RunStreamEvent {
  const payload = (row.payload ?? {}) as Payload;
  const kind = row.kind as Kind;
  if (kind === "agent")
    return { type: "agent", seq: row.seq, runId: row.runId, event: payload.event as AgentEvent };
  return { ...payload, type: kind, seq: row.seq } as RunStreamEvent;
}

export class RunTrail {
  /** Recorded events not yet committed, oldest first (the first `writing` of them are being written). */
  private pending: RunStreamEvent[] = [];
  private writing = 0;
  /** Every recorded event with a seq up to this one is in the database. */
  private committedThrough = 0;
  private chain: Promise<void> = Promise.resolve();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private storedEvents = 0;
  private storedBytes = 0;
  truncated = false;

  constructor(
    private readonly db: Db,
    private readonly runId: string,
    private readonly limits: TrailLimits,
    private readonly onError: (error: unknown) => void,
  ) {}

  /**
   * Keeps an event for the trail. When it would take the trail over its cap, the trail is cut: the
   * marker returned (carrying this event's seq) is stored instead and must be streamed before the
   * event, which then needs the next seq. Events after a cut are not kept (the end always is).
   */
  record(event: RunStreamEvent): (RunStreamEvent & { type: "truncated" }) | null {
    if (event.type === "end" || event.type === "truncated") {
      this.keep(event);
      return null;
    }
    if (this.truncated) return null;
    const bytes = Buffer.byteLength(JSON.stringify(toRow(this.runId, event).payload));
    if (this.storedEvents + 1 > this.limits.maxEvents || this.storedBytes + bytes > this.limits.maxBytes) {
      this.truncated = true;
      const marker = {
        type: "truncated" as const,
        seq: event.seq,
        storedEvents: this.storedEvents,
        storedBytes: this.storedBytes,
        maxEvents: this.limits.maxEvents,
        maxBytes: this.limits.maxBytes,
      };
      this.keep(marker);
      return marker;
    }
    this.storedEvents++;
    this.storedBytes += bytes;
    this.keep(event);
    return null;
  }

  private keep(event: RunStreamEvent) {
    this.pending.push(event);
    if (this.pending.length - this.writing >= BATCH_EVENTS) void this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        void this.flush();
      }, FLUSH_MS);
      (this.timer as { unref?: () => void }).unref?.();
    }
  }

  /** Which seq the database holds the trail up to, and the recorded events after it (a copy). */
  snapshot(): { committedThrough: number; events: RunStreamEvent[] } {
    return { committedThrough: this.committedThrough, events: [...this.pending] };
  }

  /** Writes everything recorded so far; resolves once it is committed (batches never overlap). */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.chain = this.chain.then(() => this.writeBatch());
    return this.chain;
  }

  private async writeBatch(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.slice(0, BATCH_EVENTS);
      this.writing = batch.length;
      try {
        await this.db
          .insert(runEvents)
          .values(batch.map((event) => toRow(this.runId, event)))
          // A batch whose commit was reported failed may still have landed: writing it again is harmless.
          .onConflictDoNothing();
      } catch (error) {
        this.writing = 0;
        this.onError(error);
        return; // kept in memory; the next flush tries again
      }
      this.pending.splice(0, batch.length);
      this.writing = 0;
      this.committedThrough = batch.at(-1)!.seq;
    }
  }
}

/** A run's stored trail in seq order, up to `through` (all of it when omitted), page by page. */
export async function* storedTrail(db: Db, runId: string, through?: number): AsyncGenerator<RunStreamEvent> {
  let after = 0;
  for (;;) {
    const rows = await db
      .select()
      .from(runEvents)
      .where(
        and(
          eq(runEvents.runId, runId),
          gt(runEvents.seq, after),
          ...(through === undefined ? [] : [lte(runEvents.seq, through)]),
        ),
      )
      .orderBy(asc(runEvents.seq))
      .limit(READ_PAGE);
    for (const row of rows) yield fromRow(row);
    if (rows.length < READ_PAGE) return;
    after = rows.at(-1)!.seq;
  }
}

/**
 * The end of a finished run as its row tells it, for trails that have none stored: runs from before
 * trails were kept, and runs a stopped server left unfinished (INTERRUPTED at the next start).
 */
export function endFromRow(row: RunRow, seq: number): RunStreamEvent {
  return { type: "end", seq, status: row.status, exitCode: row.exitCode, snapshotId: row.snapshotId };
}
