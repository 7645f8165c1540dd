// Room persistence: an append-only update log per room in libSQL, the source of truth for every
// instance. Appends are group-committed at once (whatever arrives while a write is under way goes in
// the next transaction, one batch with one row per room), and each append's promise resolves with its row
// id only once that transaction committed: rooms broadcast and publish an update after that, so an
// update anyone saw is on disk (kill -9 loses nothing acknowledged).
//
// Compaction (when a room's log grows long, in rows or in bytes) folds the rows up to the largest id
// it read, N, into one state update that replaces exactly the rows <= N, and keeps the id N. Rows
// other instances wrote after N are never touched, whatever their timing (a compaction built from one
// instance's memory and deleting up to MAX(id) would drop them). Keeping N means no instance that
// already read up to N sees the compacted row as new.
import { and, asc, count, eq, gt, gte, inArray, lt, lte, max } from "drizzle-orm";
import * as Y from "yjs";
import type { Db } from "../db/client.ts";
import { collabUpdates } from "../db/schema.ts";

const COMPACT_AFTER = 200;
/** Bytes written to a room's log since its last compaction that trigger one. */
const COMPACT_AFTER_BYTES = 2 * 1024 * 1024;
/**
 * A shorter log is compacted too once it holds more bytes than its compacted state (and at least
 * this many): content typed and deleted again, one row per commit. Never more often than that, so a
 * large document is not rewritten for every few edits.
 */
const COMPACT_SHORT_ROWS = 16;
const COMPACT_SHORT_BYTES = 256 * 1024;
/** After a failed write, the batch is retried this much later (it stays pending meanwhile). */
const RETRY_MS = 1000;

interface Pending {
  updates: Uint8Array[];
  written: ((id: number) => void)[];
}

export interface StoredRoom {
  /** The room's state as one update (null when it has none). */
  update: Uint8Array | null;
  /** The largest row id read (0 for none): later rows are what this state lacks. */
  lastId: number;
}

export class UpdateLog {
  private pending = new Map<string, Pending>();
  /** Rows per room as far as this instance knows (counted on load, +1 per write), so busy rooms are
   * not counted in SQL on every write. */
  private readonly rows = new Map<string, number>();
  /** Bytes per room written since its last compaction (as far as this instance knows). */
  private readonly bytes = new Map<string, number>();
  /** Bytes of each room's first row (its last compaction's state, or its first update). */
  private readonly baseBytes = new Map<string, number>();
  private scheduled = false;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly db: Db,
    private readonly onError: (error: unknown) => void,
    /** Told of every row written (after its commit): the rooms publish it to other instances. */
    private readonly onWritten: (room: string, id: number, update: Uint8Array) => void = () => {},
  ) {}

  async load(room: string): Promise<StoredRoom> {
    const rows = await this.db
      .select({ id: collabUpdates.id, update: collabUpdates.update })
      .from(collabUpdates)
      .where(eq(collabUpdates.room, room))
      .orderBy(asc(collabUpdates.id));
    this.rows.set(room, rows.length);
    // The first row is the last compaction's (or the room's first update): count what came after.
    this.bytes.set(
      room,
      rows.slice(1).reduce((sum, r) => sum + r.update.byteLength, 0),
    );
    this.baseBytes.set(room, rows[0]?.update.byteLength ?? 0);
    if (rows.length === 0) return { update: null, lastId: 0 };
    return {
      update: Y.mergeUpdates(rows.map((r) => new Uint8Array(r.update))),
      lastId: rows.at(-1)!.id,
    };
  }

  /** Rows of these rooms with an id above `afterId`, in id order (what other instances wrote since). */
  async since(rooms: string[], afterId: number): Promise<{ id: number; room: string; update: Uint8Array }[]> {
    if (rooms.length === 0) return [];
    const rows = await this.db
      .select({ id: collabUpdates.id, room: collabUpdates.room, update: collabUpdates.update })
      .from(collabUpdates)
      .where(and(gt(collabUpdates.id, afterId), inArray(collabUpdates.room, rooms)))
      .orderBy(asc(collabUpdates.id));
    return rows.map((r) => ({ id: r.id, room: r.room, update: new Uint8Array(r.update) }));
  }

  /**
   * The largest row id of every room whose name starts with `prefix` (one range read of the
   * (room, id) index): which of a branch's file rooms have rows, and how far they go.
   */
  async lastIds(prefix: string): Promise<{ room: string; lastId: number }[]> {
    if (prefix === "") throw new Error("lastIds needs a prefix");
    // The first name after every name with the prefix: its last character, plus one.
    const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
    const rows = await this.db
      .select({ room: collabUpdates.room, lastId: max(collabUpdates.id) })
      .from(collabUpdates)
      .where(and(gte(collabUpdates.room, prefix), lt(collabUpdates.room, end)))
      .groupBy(collabUpdates.room);
    return rows.map((r) => ({ room: r.room, lastId: Number(r.lastId ?? 0) }));
  }

  /** Appends an update; resolves with its row id once committed (never rejects: failures retry). */
  append(room: string, update: Uint8Array): Promise<number> {
    return new Promise((resolve) => {
      const entry = this.pending.get(room);
      if (entry) {
        entry.updates.push(update);
        entry.written.push(resolve);
      } else this.pending.set(room, { updates: [update], written: [resolve] });
      this.schedule();
    });
  }

  /** The next write starts as soon as the one under way (if any) is done. */
  private schedule() {
    if (this.scheduled || this.retry || this.closed) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  /** Writes everything pending now (one transaction), then compacts rooms whose log grew long. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.writeBatch());
    return this.flushing;
  }

  private async writeBatch(): Promise<void> {
    const batch = [...this.pending];
    this.pending = new Map();
    if (batch.length === 0) return;
    const merged = batch.map(([room, p]) => [room, Y.mergeUpdates(p.updates), p] as const);
    let ids: number[];
    try {
      // One batch: a single transaction the client runs in one call. (An interactive transaction
      // awaits each statement and holds the process's transaction gate meanwhile; this write sits
      // between an update and its relay, so it is kept as short as it can be.)
      const inserts = merged.map(([room, update]) =>
        this.db
          .insert(collabUpdates)
          .values({ room, update: Buffer.from(update), createdAt: new Date() })
          .returning({ id: collabUpdates.id }),
      );
      const written = await this.db.batch(inserts as [(typeof inserts)[number], ...typeof inserts]);
      ids = written.map((rows) => rows[0]!.id);
    } catch (error) {
      // Keep the updates (ahead of anything newer) for a retry rather than lose them.
      for (const [room, p] of batch) {
        const later = this.pending.get(room);
        this.pending.set(room, {
          updates: [...p.updates, ...(later?.updates ?? [])],
          written: [...p.written, ...(later?.written ?? [])],
        });
      }
      this.onError(error);
      if (!this.closed)
        this.retry ??= setTimeout(() => {
          this.retry = undefined;
          void this.flush();
        }, RETRY_MS);
      return;
    }
    merged.forEach(([room, update, p], i) => {
      this.bytes.set(room, (this.bytes.get(room) ?? 0) + update.byteLength);
      this.onWritten(room, ids[i]!, update);
      for (const resolve of p.written) resolve(ids[i]!);
    });
    // Written: a failed compaction only leaves the log longer until next time.
    for (const [room] of batch) await this.compactIfLong(room).catch((error) => this.onError(error));
    if (this.pending.size > 0) this.schedule();
  }

  private async compactIfLong(room: string): Promise<void> {
    const known = (this.rows.get(room) ?? 0) + 1;
    this.rows.set(room, known);
    const bytes = this.bytes.get(room) ?? 0;
    const long =
      bytes > COMPACT_AFTER_BYTES ||
      (known > COMPACT_SHORT_ROWS && bytes > Math.max(COMPACT_SHORT_BYTES, this.baseBytes.get(room) ?? 0));
    if (known <= COMPACT_AFTER && !long) return;
    // Another instance may have written too: count for real before compacting.
    const [{ rows } = { rows: 0 }] = await this.db
      .select({ rows: count() })
      .from(collabUpdates)
      .where(eq(collabUpdates.room, room));
    this.rows.set(room, rows);
    if (rows <= COMPACT_AFTER && !long) return;
    const { stateBytes } = await compactRoom(this.db, room);
    this.rows.set(room, 1);
    this.bytes.set(room, 0);
    this.baseBytes.set(room, stateBytes);
  }

  /** Drops what is remembered about an unloaded room (its log stays in the database). */
  forget(room: string): void {
    if (this.pending.has(room)) return;
    this.rows.delete(room);
    this.bytes.delete(room);
    this.baseBytes.delete(room);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    await this.flush();
  }
}

/**
 * Folds a room's rows up to the largest id read, N, into one row with the id N: the state is built
 * from exactly those rows, and only rows <= N are replaced (in one transaction), so rows any instance
 * writes meanwhile (ids > N) stay as they are. Returns N (0 when the room has no rows) and the size
 * of the compacted row.
 */
export async function compactRoom(db: Db, room: string): Promise<{ upTo: number; stateBytes: number }> {
  const rows = await db
    .select({ id: collabUpdates.id, update: collabUpdates.update, createdAt: collabUpdates.createdAt })
    .from(collabUpdates)
    .where(eq(collabUpdates.room, room))
    .orderBy(asc(collabUpdates.id));
  if (rows.length < 2) return { upTo: rows[0]?.id ?? 0, stateBytes: rows[0]?.update.byteLength ?? 0 };
  const last = rows.at(-1)!;
  const state = compactState(rows.map((r) => new Uint8Array(r.update)));
  await db.transaction(async (tx) => {
    await tx.delete(collabUpdates).where(and(eq(collabUpdates.room, room), lte(collabUpdates.id, last.id)));
    // Rows <= N that another compaction already folded are gone: this one's state holds them too.
    await tx
      .insert(collabUpdates)
      .values({ id: last.id, room, update: Buffer.from(state), createdAt: last.createdAt });
  });
  return { upTo: last.id, stateBytes: state.byteLength };
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
