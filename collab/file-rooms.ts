// Which branch file rooms have sockets on which instance, known to every instance. A branch's live
// workspace belongs to one instance (its owner); a file room's clients may be on any other. Each
// instance announces the file rooms it serves on one bus topic (whenever the set changes, and again
// every ANNOUNCE_MS while it is not empty); an announcement not renewed within EXPIRE_MS (a killed
// instance) is forgotten. The owner loads the rooms announced for its branches (headless, without
// sockets) so that edits made anywhere reach its workspace, and what its runs change reaches the
// rooms everywhere (collab/server.ts).
//
// Cost on a shared store: one publish per instance per ANNOUNCE_MS while it serves file rooms, plus
// one per change (gathered over CHANGE_MS); the topic is tailed with the others (no extra reads).
import type { Bus } from "../bus/bus.ts";

const TOPIC = "collab:file-rooms";
export const ANNOUNCE_MS = 10_000;
const EXPIRE_MS = 3 * ANNOUNCE_MS + 1000;
const CHANGE_MS = 50;

interface Announcement {
  /** The announcing instance. */
  i: string;
  /** Every file room it serves now. */
  rooms: string[];
}

export class FileRoomDirectory {
  /** room -> instance -> when its announcement expires. */
  private readonly elsewhere = new Map<string, Map<string, number>>();
  private readonly mine = new Set<string>();
  private readonly events: AsyncIterableIterator<{ payload: Announcement }>;
  private readonly timer: ReturnType<typeof setInterval>;
  private changeTimer: ReturnType<typeof setTimeout> | undefined;
  private announcedEmpty = true;

  constructor(
    private readonly bus: Bus,
    private readonly instance: string,
    /** Told on every announcement heard and when announcements expire. */
    private readonly onChange: () => void,
    private readonly onError: (message: string, error: unknown) => void,
  ) {
    const events = bus.subscribe<Announcement>(TOPIC);
    this.events = events;
    void (async () => {
      try {
        for await (const { payload } of events) if (payload.i !== instance) this.heard(payload);
      } catch (error) {
        onError("collab: following file room announcements failed", error);
      }
    })();
    this.timer = setInterval(() => {
      this.expire();
      if (this.mine.size > 0) this.publish();
    }, ANNOUNCE_MS);
    (this.timer as { unref?: () => void }).unref?.();
  }

  /** This instance serves (or stopped serving) sockets in `room`. */
  set(room: string, open: boolean): void {
    if (open === this.mine.has(room)) return;
    if (open) this.mine.add(room);
    else this.mine.delete(room);
    this.changeTimer ??= setTimeout(() => {
      this.changeTimer = undefined;
      this.publish();
    }, CHANGE_MS);
  }

  /** File rooms with sockets on other (live) instances, of one branch or all. */
  openElsewhere(branchId?: string): string[] {
    const prefix = branchId === undefined ? "" : `branches/${branchId}/files/`;
    return [...this.elsewhere.keys()].filter((room) => room.startsWith(prefix));
  }

  isOpenElsewhere(room: string): boolean {
    return this.elsewhere.has(room);
  }

  private publish() {
    if (this.mine.size === 0 && this.announcedEmpty) return;
    this.announcedEmpty = this.mine.size === 0;
    const message: Announcement = { i: this.instance, rooms: [...this.mine] };
    void this.bus.publish(TOPIC, message).catch((error) => this.onError("collab: announcing failed", error));
  }

  private heard({ i, rooms }: Announcement) {
    const until = Date.now() + EXPIRE_MS;
    const now = new Set(rooms);
    for (const [room, instances] of this.elsewhere)
      if (instances.has(i) && !now.has(room)) {
        instances.delete(i);
        if (instances.size === 0) this.elsewhere.delete(room);
      }
    for (const room of now) {
      const instances = this.elsewhere.get(room) ?? new Map<string, number>();
      instances.set(i, until);
      this.elsewhere.set(room, instances);
    }
    // On every announcement, renewals too: an instance that became a branch's owner since (a
    // takeover) picks the branch's rooms up within one announcement period.
    this.onChange();
  }

  private expire() {
    const now = Date.now();
    let changed = false;
    for (const [room, instances] of this.elsewhere) {
      for (const [instance, until] of instances)
        if (until < now) {
          instances.delete(instance);
          changed = true;
        }
      if (instances.size === 0) this.elsewhere.delete(room);
    }
    if (changed) this.onChange();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    if (this.changeTimer) clearTimeout(this.changeTimer);
    await this.events.return?.();
  }
}
