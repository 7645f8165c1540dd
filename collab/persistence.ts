// Room persistence: an append-only update log per room, written in small batches (group commit: one
// transaction per window) and compacted into one state update when it grows. A kill -9 loses at most
// the updates of the current window (FLUSH_MS); a client that reconnects re-syncs whatever we lack.
import { and, asc, count, eq, lte } from "drizzle-orm";
import * as Y from "yjs";
import type { Db } from "../db/client.ts";
import { collabUpdates } from "../db/schema.ts";

export const FLUSH_MS = 50;
const COMPACT_AFTER = 200;

export class UpdateLog {
  private readonly pending = new Map<string, Uint8Array[]>();
  /** Rows per room as far as this instance knows (counted on load, +1 per write), so busy rooms are
   * not counted in SQL on every flush. */
  private readonly rows = new Map<string, number>();
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
        await this.db.transaction(async (tx) => {
          for (const [room, updates] of batch) {
            await tx
              .insert(collabUpdates)
              .values({ room, update: Buffer.from(Y.mergeUpdates(updates)), createdAt: new Date() });
          }
        });
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
    if (known <= COMPACT_AFTER) return;
    // Another instance may have written too: count for real before compacting.
    const [{ rows } = { rows: 0 }] = await this.db
      .select({ rows: count() })
      .from(collabUpdates)
      .where(eq(collabUpdates.room, room));
    this.rows.set(room, rows);
    if (rows <= COMPACT_AFTER) return;
    await this.db.transaction(async (tx) => {
      const all = await tx
        .select({ id: collabUpdates.id, update: collabUpdates.update })
        .from(collabUpdates)
        .where(eq(collabUpdates.room, room))
        .orderBy(asc(collabUpdates.id));
      const last = all.at(-1)!.id;
      const merged = Y.mergeUpdates(all.map((r) => new Uint8Array(r.update)));
      await tx.delete(collabUpdates).where(and(eq(collabUpdates.room, room), lte(collabUpdates.id, last)));
      await tx.insert(collabUpdates).values({ room, update: Buffer.from(merged), createdAt: new Date() });
    });
    this.rows.set(room, 1);
  }

  /** Drops what is remembered about an unloaded room (its log stays in the database). */
  forget(room: string): void {
    if (!this.pending.has(room)) this.rows.delete(room);
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}
