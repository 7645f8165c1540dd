// Room persistence: an append-only update log per room, written in small batches (group commit: one
// transaction per window) and compacted into one state update when it grows (in rows, or in bytes:
// content typed and deleted again still fills the log). A kill -9 loses at most the updates of the
// current window (FLUSH_MS); a client that reconnects re-syncs whatever we lack.
import { and, asc, count, eq, lte } from "drizzle-orm";
import * as Y from "yjs";
import type { Db } from "../db/client.ts";
import { collabUpdates } from "../db/schema.ts";

export const FLUSH_MS = 50;
const COMPACT_AFTER = 200;
/** Bytes written to a room's log since its last compaction that trigger one. */
const COMPACT_AFTER_BYTES = 2 * 1024 * 1024;

export class UpdateLog {
  private readonly pending = new Map<string, Uint8Array[]>();
  /** Rows per room as far as this instance knows (counted on load, +1 per write), so busy rooms are
   * not counted in SQL on every flush. */
  private readonly rows = new Map<string, number>();
  /** Bytes per room written since its last compaction (as far as this instance knows). */
  private readonly bytes = new Map<string, number>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Db,
    private readonly onError: (error: unknown) => void,
  ) {}

  /** The room's stored state as one update (null when it has none). */
  async load(room: string): Promise<Uint8Array | null> {
    const rows = await this.db
      .select({ update: collabUpdates.update })
      .from(collabUpdates)
      .where(eq(collabUpdates.room, room))
      .orderBy(asc(collabUpdates.id));
    this.rows.set(room, rows.length);
    // The first row is the last compaction's (or the room's first update): count what came after.
    this.bytes.set(
      room,
      rows.slice(1).reduce((sum, r) => sum + r.update.byteLength, 0),
    );
    if (rows.length === 0) return null;
    return Y.mergeUpdates(rows.map((r) => new Uint8Array(r.update)));
  }

  append(room: string, update: Uint8Array): void {
    const list = this.pending.get(room);
    if (list) list.push(update);
    else this.pending.set(room, [update]);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, FLUSH_MS);
  }

  /** Writes everything pending now (one transaction), then compacts rooms whose log grew long. */
  flush(): Promise<void> {
    const batch = [...this.pending];
    this.pending.clear();
    this.flushing = this.flushing.then(async () => {
      if (batch.length === 0) return;
      try {
        const merged = batch.map(([room, updates]) => [room, Y.mergeUpdates(updates)] as const);
        await this.db.transaction(async (tx) => {
          for (const [room, update] of merged)
            await tx
              .insert(collabUpdates)
              .values({ room, update: Buffer.from(update), createdAt: new Date() });
        });
        for (const [room, update] of merged)
          this.bytes.set(room, (this.bytes.get(room) ?? 0) + update.byteLength);
      } catch (error) {
        // Keep the updates for the next window rather than lose them, and make sure there is one.
        for (const [room, updates] of batch)
          this.pending.set(room, [...updates, ...(this.pending.get(room) ?? [])]);
        this.onError(error);
        this.timer ??= setTimeout(() => {
          this.timer = undefined;
          void this.flush();
        }, FLUSH_MS * 20);
        return;
      }
      // Written: a failed compaction only leaves the log longer until next time.
      for (const [room] of batch) await this.compactIfLong(room).catch((error) => this.onError(error));
    });
    return this.flushing;
  }

  private async compactIfLong(room: string): Promise<void> {
    const known = (this.rows.get(room) ?? 0) + 1;
    this.rows.set(room, known);
    const long = (this.bytes.get(room) ?? 0) > COMPACT_AFTER_BYTES;
    if (known <= COMPACT_AFTER && !long) return;
    // Another instance may have written too: count for real before compacting.
    const [{ rows } = { rows: 0 }] = await this.db
      .select({ rows: count() })
      .from(collabUpdates)
      .where(eq(collabUpdates.room, room));
    this.rows.set(room, rows);
    if (rows <= COMPACT_AFTER && !long) return;
    await this.db.transaction(async (tx) => {
      const all = await tx
        .select({ id: collabUpdates.id, update: collabUpdates.update })
        .from(collabUpdates)
        .where(eq(collabUpdates.room, room))
        .orderBy(asc(collabUpdates.id));
      const last = all.at(-1)!.id;
      const merged = compactState(all.map((r) => new Uint8Array(r.update)));
      await tx.delete(collabUpdates).where(and(eq(collabUpdates.room, room), lte(collabUpdates.id, last)));
      await tx.insert(collabUpdates).values({ room, update: Buffer.from(merged), createdAt: new Date() });
    });
    this.rows.set(room, 1);
    this.bytes.set(room, 0);
  }

  /** Drops what is remembered about an unloaded room (its log stays in the database). */
  forget(room: string): void {
    if (this.pending.has(room)) return;
    this.rows.delete(room);
    this.bytes.delete(room);
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}

/**
 * The log's updates as one state update. Applied to a document rather than merged with
 * Y.mergeUpdates, which keeps the content of deleted items: a document garbage-collects it, so the
 * compacted row holds what the room holds, not everything ever typed into it.
 */
function compactState(updates: Uint8Array[]): Uint8Array {
  const doc = new Y.Doc();
  try {
    doc.transact(() => {
      for (const update of updates) Y.applyUpdate(doc, update);
    });
    return Y.encodeStateAsUpdate(doc);
  } finally {
    doc.destroy();
  }
}
