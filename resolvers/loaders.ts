// Per-request batch loaders (dataloader): a list of sessions, branches or snapshots resolves its
// related rows in one query per kind, not one per item. Fresh per request, so no cross-request cache.
import DataLoader from "dataloader";
import { and, eq, inArray } from "drizzle-orm";
import { alias } from "drizzle-orm/sqlite-core";
import type { Db } from "../db/client.ts";
import {
  type ApiKeyRow,
  apiKeys,
  type BranchRow,
  branches,
  type ExplorationRow,
  explorations,
  members,
  type Role,
  type RunRow,
  runs,
  type SessionRow,
  type ShareLinkRow,
  type SnapshotRow,
  sessions,
  shareLinks,
  snapshots,
  type UserRow,
  users,
} from "../db/schema.ts";

function byId<T extends { id: string }>(load: (ids: string[]) => Promise<T[]>) {
  return new DataLoader<string, T | null>(async (ids) => {
    const rows = await load([...ids]);
    const map = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => map.get(id) ?? null);
  });
}

function grouped<T>(load: (keys: string[]) => Promise<T[]>, keyOf: (row: T) => string) {
  return new DataLoader<string, T[]>(async (keys) => {
    const rows = await load([...keys]);
    const map = new Map<string, T[]>();
    for (const row of rows) {
      const key = keyOf(row);
      const list = map.get(key);
      if (list) list.push(row);
      else map.set(key, [row]);
    }
    return keys.map((k) => map.get(k) ?? []);
  });
}

/**
 * The loaders of one request, each created on first access: most requests touch one or two of them
 * (`{ me { id } }` only `user`), and a dozen DataLoaders built per request were a measurable share of
 * the hot path. The viewer's own row, when known, is primed into `user` as that loader is created.
 */
export class Loaders {
  #user?: DataLoader<string, UserRow | null>;
  #session?: DataLoader<string, SessionRow | null>;
  #branch?: DataLoader<string, BranchRow | null>;
  #snapshot?: DataLoader<string, SnapshotRow | null>;
  #run?: DataLoader<string, RunRow | null>;
  #exploration?: DataLoader<string, ExplorationRow | null>;
  #branchesOfSession?: DataLoader<string, BranchRow[]>;
  #childrenOfSnapshot?: DataLoader<string, SnapshotRow[]>;
  #membersOfSession?: DataLoader<string, (typeof members.$inferSelect)[]>;
  #role?: DataLoader<string, Role | null>;
  #apiKey?: DataLoader<string, ApiKeyRow | null>;
  #shareLink?: DataLoader<string, ShareLinkRow | null>;
  #sharesSessionWith?: DataLoader<string, boolean>;
  #branchBusy?: DataLoader<string, boolean>;

  constructor(
    private readonly db: Db,
    private readonly viewerId: string | null,
    private readonly viewerRow: UserRow | null = null,
  ) {}

  get user() {
    if (!this.#user) {
      const db = this.db;
      this.#user = byId<UserRow>((ids) => db.select().from(users).where(inArray(users.id, ids)));
      if (this.viewerId && this.viewerRow) this.#user.prime(this.viewerId, this.viewerRow);
    }
    return this.#user;
  }
  get session() {
    const db = this.db;
    this.#session ??= byId<SessionRow>((ids) => db.select().from(sessions).where(inArray(sessions.id, ids)));
    return this.#session;
  }
  get branch() {
    const db = this.db;
    this.#branch ??= byId<BranchRow>((ids) => db.select().from(branches).where(inArray(branches.id, ids)));
    return this.#branch;
  }
  get snapshot() {
    const db = this.db;
    this.#snapshot ??= byId<SnapshotRow>((ids) =>
      db.select().from(snapshots).where(inArray(snapshots.id, ids)),
    );
    return this.#snapshot;
  }
  get run() {
    const db = this.db;
    this.#run ??= byId<RunRow>((ids) => db.select().from(runs).where(inArray(runs.id, ids)));
    return this.#run;
  }
  get exploration() {
    const db = this.db;
    this.#exploration ??= byId<ExplorationRow>((ids) =>
      db.select().from(explorations).where(inArray(explorations.id, ids)),
    );
    return this.#exploration;
  }
  get branchesOfSession() {
    const db = this.db;
    this.#branchesOfSession ??= grouped(
      (ids) => db.select().from(branches).where(inArray(branches.sessionId, ids)).orderBy(branches.createdAt),
      (b) => b.sessionId,
    );
    return this.#branchesOfSession;
  }
  get childrenOfSnapshot() {
    const db = this.db;
    this.#childrenOfSnapshot ??= grouped(
      (ids) =>
        db.select().from(snapshots).where(inArray(snapshots.parentId, ids)).orderBy(snapshots.createdAt),
      (s) => s.parentId!,
    );
    return this.#childrenOfSnapshot;
  }
  get membersOfSession() {
    const db = this.db;
    this.#membersOfSession ??= grouped(
      (ids) => db.select().from(members).where(inArray(members.sessionId, ids)).orderBy(members.createdAt),
      (m) => m.sessionId,
    );
    return this.#membersOfSession;
  }
  /** The viewer's role in each session (null: not a member). */
  get role() {
    const { db, viewerId } = this;
    this.#role ??= new DataLoader<string, Role | null>(async (sessionIds) => {
      if (!viewerId) return sessionIds.map(() => null);
      const rows = await db
        .select({ sessionId: members.sessionId, role: members.role })
        .from(members)
        .where(and(eq(members.userId, viewerId), inArray(members.sessionId, [...sessionIds])));
      const map = new Map(rows.map((r) => [r.sessionId, r.role]));
      return sessionIds.map((id) => map.get(id) ?? null);
    });
    return this.#role;
  }
  /** API keys by id, of any account: callers check the owner. */
  get apiKey() {
    const db = this.db;
    this.#apiKey ??= byId<ApiKeyRow>((ids) => db.select().from(apiKeys).where(inArray(apiKeys.id, ids)));
    return this.#apiKey;
  }
  /** Share links by id, of any session: callers check the role. */
  get shareLink() {
    const db = this.db;
    this.#shareLink ??= byId<ShareLinkRow>((ids) =>
      db.select().from(shareLinks).where(inArray(shareLinks.id, ids)),
    );
    return this.#shareLink;
  }
  /** Whether the viewer is a member of a session the user (by id) is a member of too. */
  get sharesSessionWith() {
    const { db, viewerId } = this;
    this.#sharesSessionWith ??= new DataLoader<string, boolean>(async (userIds) => {
      if (!viewerId) return userIds.map(() => false);
      const mine = alias(members, "mine");
      const rows = await db
        .selectDistinct({ userId: members.userId })
        .from(members)
        .innerJoin(mine, and(eq(mine.sessionId, members.sessionId), eq(mine.userId, viewerId)))
        .where(inArray(members.userId, [...userIds]));
      const shared = new Set(rows.map((r) => r.userId));
      return userIds.map((id) => shared.has(id));
    });
    return this.#sharesSessionWith;
  }
  /**
   * Whether a branch has a run queued or running, on any instance: the runs table is the shared
   * truth (an instance's memory only knows the runs it executes itself).
   */
  get branchBusy() {
    const db = this.db;
    this.#branchBusy ??= new DataLoader<string, boolean>(async (branchIds) => {
      const rows = await db
        .selectDistinct({ branchId: runs.branchId })
        .from(runs)
        .where(and(inArray(runs.branchId, [...branchIds]), inArray(runs.status, [...ACTIVE_RUN])));
      const busy = new Set(rows.map((r) => r.branchId));
      return branchIds.map((id) => busy.has(id));
    });
    return this.#branchBusy;
  }
}

/** Run statuses that mean "something is (or is about to be) running on the branch". */
const ACTIVE_RUN = ["QUEUED", "RUNNING"] as const;

export function createLoaders(db: Db, viewerId: string | null, viewerRow: UserRow | null = null): Loaders {
  return new Loaders(db, viewerId, viewerRow);
}
