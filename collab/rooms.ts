// The rooms this instance holds in memory: loaded on first use (a socket, a server-side chat message,
// a branch's work hooks), kept while anything uses them, unloaded after a grace period.
//
// Every use is counted from the moment it asks (acquire), before any await, and a room is dropped only
// when, after its unload work (last flush of a file buffer, the log written), nothing uses it: a socket
// joining while a room unloads keeps it, so no update can land in a room that is being thrown away
// (Hocuspocus #971 lost client updates that way).
//
// With other instances (a shared bus), each loaded room follows its topic (room-feed.ts): it takes the
// topic's cursor, then reads the log, then follows from the cursor. Every POLL_MS it also reads the log
// rows newer than the last it read (one indexed query for all loaded rooms): a row whose instance was
// killed between its commit and its publish still arrives, without any peer having to answer.
//
// Branch file rooms: the instance holding the branch's live sandbox (its owner) writes edits to the
// workspace and reads runs' changes back. It loads, headless, every file room other instances announce
// for its branches (file-rooms.ts), and before and after each queued work item it flushes and syncs
// them, loading a room announced elsewhere that it does not hold yet; what it reads back is stored and
// published like any edit, so it reaches sockets on every instance.
//
// Announcements can come late (an instance that started after one, a socket that closed before the
// owner heard of it) and a stored edit may never have reached the workspace (kill -9 between its commit
// and the buffer's flush, a restart, a takeover). So before each queued item the owner also reads, in
// one indexed query, the last log row of every file room of the branch: a loaded room behind it catches
// up from the log, and a room not loaded whose rows this live sandbox has not taken in (recorded when
// a room unloads with nothing left to write) is loaded, which writes it to the workspace.
import { eq } from "drizzle-orm";
import type { Bus } from "../bus/bus.ts";
import type { Db } from "../db/client.ts";
import { branches } from "../db/schema.ts";
import type { SandboxFiles } from "../resolvers/branch-runtime.ts";
import type { Logger } from "../resolvers/context.ts";
import { AppError } from "../resolvers/errors.ts";
import { type BranchFiles, FileBuffer } from "./file-buffer.ts";
import { FileRoomDirectory } from "./file-rooms.ts";
import { UpdateLog } from "./persistence.ts";
import { permissionDenied, Room } from "./room.ts";
import { encodeBinary, followRoom, type RoomMessage, roomTopic } from "./room-feed.ts";
import { type CollabLimits, roomLimits } from "./room-limits.ts";
import { parseRoomName, type RoomName } from "./room-names.ts";

/** How often loaded rooms read the log rows other instances wrote (the safety net under the bus). */
const POLL_MS = 5000;
/** Branches whose applied rows are remembered (the least recently flushed are forgotten first). */
const MAX_APPLIED_BRANCHES = 1000;

/** The name prefix of a branch's file rooms. */
const fileRoomsOf = (branchId: string) => `branches/${branchId}/files/`;

export interface RoomsDeps {
  db: Db;
  bus: Bus;
  log: Logger;
  files: BranchFiles;
  /** Other instances share the bus and the database: follow rooms' topics and announce file rooms. */
  replicate: boolean;
  graceMs: number;
  maxFileBytes: number;
  fileFlushMs: number;
  limits?: Partial<CollabLimits>;
  /** A room finished loading (presence, session watch) and, later, was dropped. */
  onLoad(target: RoomName, sessionId: string, room: Room): void;
  onUnload(sessionId: string): void;
}

interface Entry {
  target: RoomName;
  sessionId: string;
  room: Promise<Room>;
  /** Set once loaded. */
  loaded?: Room;
  buffer?: FileBuffer;
  /** Uses now: sockets (joined or joining), server-side calls, holds for other instances. */
  users: number;
  /** Sockets among them (file rooms with sockets here are announced to other instances). */
  sockets: number;
  unload?: ReturnType<typeof setTimeout>;
  /** Why the room stopped taking connections, if it did. */
  refused?: AppError;
  /** The largest log row id this room has read from the log. */
  seen: number;
  stopFeed?: () => void;
}

export interface RoomLease {
  room: Promise<Room>;
  /** Ends this use (once). */
  release(): void;
}

export class Rooms {
  private readonly rooms = new Map<string, Entry>();
  private readonly log: UpdateLog;
  /** This instance, as it signs what it publishes on rooms' topics. */
  private readonly instance = crypto.randomUUID();
  private readonly directory: FileRoomDirectory | null;
  /** File rooms loaded because sockets on other instances use them (this instance owns the branch). */
  private readonly holds = new Map<string, () => void>();
  private readonly poller: ReturnType<typeof setInterval> | undefined;
  /**
   * Per branch: the live sandbox whose workspace took in file rooms' log rows, and per room no longer
   * loaded the last row it took in (a room over it, or missing here, is loaded before the next item).
   */
  private readonly applied = new Map<string, { sandbox: string; rooms: Map<string, number> }>();
  private closed = false;

  constructor(private readonly deps: RoomsDeps) {
    this.log = new UpdateLog(
      deps.db,
      (error) => deps.log.error("collab persistence failed", { error: String(error) }),
      deps.replicate
        ? (room, id, update) => this.publish(room, { k: "u", id, d: encodeBinary(update) })
        : undefined,
    );
    if (!deps.replicate) {
      this.directory = null;
      return;
    }
    this.directory = new FileRoomDirectory(
      deps.bus,
      this.instance,
      () => this.syncHolds(),
      (message, error) => deps.log.warn(message, { error: String(error) }),
    );
    this.poller = setInterval(() => void this.catchUp([...this.rooms.values()]), POLL_MS);
    (this.poller as { unref?: () => void }).unref?.();
  }

  private publish(room: string, message: Omit<RoomMessage, "i">) {
    void this.deps.bus
      .publish<RoomMessage>(roomTopic(room), { i: this.instance, ...message })
      .catch(() => {}); // logged by the bus; the log still holds the update (POLL_MS)
  }

  get size(): number {
    return this.rooms.size;
  }

  /**
   * Uses a room, loading it if needed. `files`: the branch's live sandbox, when the caller runs inside
   * the branch's work queue (hooks), so a file room opens from it directly.
   */
  acquire(
    target: RoomName,
    sessionId: string,
    options: { socket?: boolean; files?: SandboxFiles } = {},
  ): RoomLease {
    const { name } = target;
    let entry = this.rooms.get(name);
    // A file room that stopped being editable (a run made the file binary) refuses newcomers too.
    if (entry?.refused) return { room: Promise.reject(entry.refused), release: () => {} };
    if (!entry) {
      entry = {
        target,
        sessionId,
        room: Promise.resolve(null as unknown as Room),
        users: 0,
        sockets: 0,
        seen: 0,
      };
      this.rooms.set(name, entry);
      const loading = entry;
      entry.room = this.load(loading, options.files);
      // A room that failed to load is forgotten, so the next use tries again.
      entry.room.catch(() => {
        if (this.rooms.get(name) === loading) this.rooms.delete(name);
      });
    }
    const used = entry;
    used.users++;
    if (used.unload) clearTimeout(used.unload);
    used.unload = undefined;
    if (options.socket && used.sockets++ === 0 && target.kind === "file") this.directory?.set(name, true);
    let released = false;
    return {
      room: used.room,
      release: () => {
        if (released) return;
        released = true;
        used.users--;
        if (options.socket && --used.sockets === 0) this.directory?.set(name, false);
        if (used.users === 0 && this.rooms.get(name) === used) this.scheduleUnload(used);
      },
    };
  }

  private async load(entry: Entry, files?: SandboxFiles): Promise<Room> {
    const { target } = entry;
    const { name } = target;
    const { deps } = this;
    const created = new Room(name, {
      persist: (update) => this.log.append(name, update),
      shareAwareness: deps.replicate
        ? (update) => this.publish(name, { k: "a", d: encodeBinary(update) })
        : undefined,
      limits: roomLimits(target.kind, deps.limits, deps.maxFileBytes),
      onReject: (reason) => deps.log.warn("collab frame rejected", { room: name, reason }),
    });
    let buffer: FileBuffer | undefined;
    try {
      // The topic's cursor before the log: whatever is stored after the read is published after it.
      const cursor = deps.replicate ? await deps.bus.lastId(roomTopic(name)) : 0;
      const stored = await this.log.load(name);
      if (stored.update) created.load(stored.update);
      entry.seen = stored.lastId;
      if (target.kind === "file") {
        buffer = new FileBuffer(created, target.branchId, target.path, {
          files: deps.files,
          maxBytes: deps.maxFileBytes,
          flushMs: deps.fileFlushMs,
          onError: (message, error) => deps.log.warn(message, { room: name, error: String(error) }),
          onRefused: (error) => {
            entry.refused = error;
            created.closeAll(error.closeCode, error.message.slice(0, 120), permissionDenied(error.message));
          },
        });
        await this.openFile(buffer, stored.update !== null, files);
        entry.buffer = buffer;
      }
      if (deps.replicate) this.follow(entry, created, cursor);
    } catch (error) {
      // Nothing of a room that failed to load stays behind (the awareness has a timer).
      buffer?.dispose();
      created.destroy();
      throw error;
    }
    entry.loaded = created;
    deps.onLoad(target, entry.sessionId, created);
    return created;
  }

  /** Loads a file room's workspace file, where the branch's live sandbox is. */
  private async openFile(buffer: FileBuffer, stored: boolean, files?: SandboxFiles) {
    const { deps } = this;
    if (files) return buffer.open(files);
    // A branch busy with a long run still opens its files at once (reading is safe meanwhile).
    const now = deps.files.filesNow(buffer.branchId);
    if (now) {
      await buffer.open(now, false);
      // Once the queue is free, whatever the running work changed meanwhile comes in.
      void deps.files
        .withFiles(buffer.branchId, (queued) => buffer.sync(queued))
        .catch((error) =>
          deps.log.warn("file buffer sync failed", { room: buffer.room.name, error: String(error) }),
        );
      return;
    }
    // Another instance owns the branch: the stored room is the buffer; the owner syncs it.
    if (stored && deps.replicate) return;
    await deps.files.withFiles(buffer.branchId, (queued) => buffer.open(queued));
  }

  private follow(entry: Entry, room: Room, cursor: number) {
    const { name } = entry.target;
    entry.stopFeed = followRoom(this.deps.bus, name, this.instance, cursor, {
      update: (update) => room.applyRemote(update),
      awareness: (update) => room.applyRemoteAwareness(update),
      lost: () => void this.refollow(entry, room),
      onError: (message, error) => this.deps.log.warn(message, { room: name, error: String(error) }),
    });
  }

  /** The bus lost a room's cursor: read the log from where the room is, then follow a fresh cursor. */
  private async refollow(entry: Entry, room: Room) {
    const { name } = entry.target;
    for (let attempt = 0; !this.closed && this.rooms.get(name) === entry; attempt++) {
      try {
        const cursor = await this.deps.bus.lastId(roomTopic(name));
        await this.catchUp([entry]);
        if (this.closed || this.rooms.get(name) !== entry) return;
        this.follow(entry, room, cursor);
        return;
      } catch (error) {
        if (attempt === 0)
          this.deps.log.warn("collab: catching a room up failed; retrying", {
            room: name,
            error: String(error),
          });
        await new Promise((resolve) => setTimeout(resolve, Math.min(200 * 2 ** attempt, 5000)));
      }
    }
  }

  /** Applies the log rows written since each room last read it (by any instance). */
  private async catchUp(entries: Entry[]) {
    const loaded = entries.filter((entry) => entry.loaded);
    if (loaded.length === 0) return;
    const from = Math.min(...loaded.map((entry) => entry.seen));
    const rows = await this.log
      .since(
        loaded.map((entry) => entry.target.name),
        from,
      )
      .catch((error) => {
        this.deps.log.warn("collab: reading the update log failed", { error: String(error) });
        return [];
      });
    for (const row of rows) {
      const entry = this.rooms.get(row.room);
      if (!entry?.loaded || row.id <= entry.seen) continue;
      entry.seen = row.id;
      try {
        entry.loaded.applyRemote(row.update);
      } catch (error) {
        this.deps.log.warn("collab: a stored update was not applied", {
          room: row.room,
          error: String(error),
        });
      }
    }
  }

  private scheduleUnload(entry: Entry) {
    if (entry.unload) clearTimeout(entry.unload);
    entry.unload = setTimeout(async () => {
      entry.unload = undefined;
      const room = entry.loaded;
      if (entry.users > 0) return;
      // Still loading (its user gave up quickly): looked at again once it has loaded.
      if (!room)
        return void entry.room.then(
          () => entry.users === 0 && this.scheduleUnload(entry),
          () => {},
        );
      const { buffer } = entry;
      const { name } = entry.target;
      // Written to the workspace on the way out, where the branch's live sandbox is.
      let flushedIn: string | undefined;
      const live = buffer && this.deps.files.filesNow(buffer.branchId);
      // Nothing to write: no queued item (rooms loaded before work all unload together).
      if (buffer && live && buffer.settledIn(live.sandboxId)) flushedIn = live.sandboxId;
      else if (buffer && live) {
        flushedIn = await this.deps.files
          .withFiles(buffer.branchId, async (files) => {
            await buffer.flush(files);
            return files.sandboxId;
          })
          .catch((error) => {
            this.deps.log.warn("file buffer flush failed", { room: name, error: String(error) });
            return undefined;
          });
      }
      await this.log.flush();
      // Every row of the room now read (its own last writes too): the workspace took them in if the
      // buffer has nothing left to write.
      if (buffer && flushedIn && entry.users === 0) {
        await this.catchUp([entry]);
        if (buffer.settledIn(flushedIn)) this.appliedIn(buffer.branchId, flushedIn).set(name, entry.seen);
      }
      // Anything that asked for the room meanwhile keeps it (counted before any await of theirs).
      if (entry.users > 0 || this.rooms.get(name) !== entry) return;
      this.rooms.delete(name);
      entry.stopFeed?.();
      buffer?.dispose();
      room.destroy();
      this.log.forget(name);
      this.deps.onUnload(entry.sessionId);
    }, this.deps.graceMs);
  }

  /** Holds the file rooms announced elsewhere for branches whose live sandbox is here; lets go of the rest. */
  private syncHolds() {
    const directory = this.directory;
    if (!directory || this.closed) return;
    const wanted = new Set(
      directory.openElsewhere().filter((name) => {
        const target = parseRoomName(name);
        return target?.kind === "file" && this.deps.files.filesNow(target.branchId) !== undefined;
      }),
    );
    for (const [name, release] of this.holds)
      if (!wanted.has(name) && !directory.isOpenElsewhere(name)) {
        this.holds.delete(name);
        release();
      }
    for (const name of wanted) void this.hold(name);
  }

  /** Keeps a file room loaded here for sockets elsewhere (released by syncHolds). */
  private async hold(name: string, files?: SandboxFiles): Promise<void> {
    if (this.holds.has(name)) return;
    const target = parseRoomName(name);
    if (target?.kind !== "file") return;
    const [branch] = await this.deps.db
      .select({ sessionId: branches.sessionId })
      .from(branches)
      .where(eq(branches.id, target.branchId))
      .catch(() => []);
    if (!branch || this.holds.has(name) || this.closed) return;
    const lease = this.acquire(target, branch.sessionId, { files });
    this.holds.set(name, lease.release);
    await lease.room.catch((error) => {
      if (this.holds.get(name) === lease.release) this.holds.delete(name);
      lease.release();
      this.deps.log.warn("collab: loading a file room for another instance failed", {
        room: name,
        error: String(error),
      });
    });
  }

  /** File rooms of a branch other instances serve that this one should flush or sync: held first. */
  private async holdBranch(branchId: string, files: SandboxFiles): Promise<void> {
    // A room loading meanwhile opens from the workspace itself (after this work item).
    for (const name of this.directory?.openElsewhere(branchId) ?? [])
      if (!this.rooms.has(name)) await this.hold(name, files);
      else if (this.rooms.get(name)!.loaded) void this.hold(name);
  }

  private buffersOf(branchId: string): FileBuffer[] {
    const found: FileBuffer[] = [];
    for (const entry of this.rooms.values())
      if (entry.buffer?.branchId === branchId && !entry.refused) found.push(entry.buffer);
    return found;
  }

  /** Before queued work on a branch (on its owner): what people typed, anywhere, reaches the workspace. */
  async flushBranch(branchId: string, files: SandboxFiles): Promise<void> {
    await this.holdBranch(branchId, files);
    const loaded = await this.loadUnapplied(branchId, files);
    try {
      for (const buffer of this.buffersOf(branchId)) {
        await buffer
          .flush(files)
          .catch((error) => this.deps.log.warn("file buffer flush failed", { error: String(error) }));
      }
    } finally {
      for (const lease of loaded) lease.release();
    }
  }

  /** What rows of file rooms this live sandbox took in (forgotten when the branch's sandbox changed). */
  private appliedIn(branchId: string, sandbox: string): Map<string, number> {
    let known = this.applied.get(branchId);
    if (known?.sandbox !== sandbox) known = { sandbox, rooms: new Map() };
    this.applied.delete(branchId); // re-inserted last: the map's order is by recent use
    this.applied.set(branchId, known);
    for (const oldest of this.applied.keys()) {
      if (this.applied.size <= MAX_APPLIED_BRANCHES) break;
      this.applied.delete(oldest);
    }
    return known.rooms;
  }

  /**
   * Brings in the log rows of the branch's file rooms this instance has not applied (on the owner,
   * inside the branch's queue): loaded rooms catch up; rooms not loaded whose rows the live sandbox has
   * not taken in are loaded from the log and opened on it (the returned leases keep them until the
   * caller has flushed).
   */
  private async loadUnapplied(branchId: string, files: SandboxFiles): Promise<RoomLease[]> {
    let rows: { room: string; lastId: number }[];
    try {
      rows = await this.log.lastIds(fileRoomsOf(branchId));
    } catch (error) {
      this.deps.log.warn("collab: reading the branch's file rooms failed", { error: String(error) });
      return [];
    }
    const applied = this.appliedIn(branchId, files.sandboxId);
    const behind: Entry[] = [];
    const missing: { target: RoomName; lastId: number }[] = [];
    for (const { room, lastId } of rows) {
      const entry = this.rooms.get(room);
      // A room still loading opens from the workspace itself, after this item (it waits for the queue).
      if (entry) {
        // (One instance: a loaded room holds every row; its own writes are past `seen`.)
        if (this.deps.replicate && entry.loaded && entry.seen < lastId) behind.push(entry);
        continue;
      }
      if ((applied.get(room) ?? 0) >= lastId) continue;
      const target = parseRoomName(room);
      if (target?.kind === "file" && target.branchId === branchId) missing.push({ target, lastId });
    }
    await this.catchUp(behind);
    if (missing.length === 0) return [];
    const [branch] = await this.deps.db
      .select({ sessionId: branches.sessionId })
      .from(branches)
      .where(eq(branches.id, branchId))
      .catch(() => []);
    if (!branch) return [];
    const leases: RoomLease[] = [];
    for (const { target, lastId } of missing) {
      const lease = this.acquire(target, branch.sessionId, { files });
      try {
        await lease.room;
        leases.push(lease);
      } catch (error) {
        lease.release();
        // A file that cannot be edited live (binary, too large): the workspace wins; not tried again.
        if (error instanceof AppError) applied.set(target.name, lastId);
        else
          this.deps.log.warn("collab: loading a file room before work failed", {
            room: target.name,
            error: String(error),
          });
      }
    }
    return leases;
  }

  /** After queued work on a branch (on its owner): what it changed reaches open editors everywhere. */
  async syncBranch(branchId: string, files: SandboxFiles): Promise<void> {
    await this.holdBranch(branchId, files);
    for (const buffer of this.buffersOf(branchId)) {
      await buffer
        .sync(files)
        .catch((error) => this.deps.log.warn("file buffer sync failed", { error: String(error) }));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.poller) clearInterval(this.poller);
    await this.directory?.close();
    await this.log.close();
    for (const [name, entry] of this.rooms) {
      if (entry.unload) clearTimeout(entry.unload);
      entry.stopFeed?.();
      entry.buffer?.dispose();
      (await entry.room.catch(() => null))?.destroy();
      this.rooms.delete(name);
    }
  }
}
