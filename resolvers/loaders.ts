// Per-request batch loaders (dataloader): a list of sessions, branches or snapshots resolves its
// related rows in one query per kind, not one per item. Fresh per request, so no cross-request cache.
import DataLoader from "dataloader";
import { and, eq, inArray } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import {
  type BranchRow,
  branches,
  type ExplorationRow,
  explorations,
  members,
  type Role,
  type RunRow,
  runs,
  type SessionRow,
  type SnapshotRow,
  sessions,
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

export function createLoaders(db: Db, viewerId: string | null) {
  return {
    user: byId<UserRow>((ids) => db.select().from(users).where(inArray(users.id, ids))),
    session: byId<SessionRow>((ids) => db.select().from(sessions).where(inArray(sessions.id, ids))),
    branch: byId<BranchRow>((ids) => db.select().from(branches).where(inArray(branches.id, ids))),
    snapshot: byId<SnapshotRow>((ids) => db.select().from(snapshots).where(inArray(snapshots.id, ids))),
    run: byId<RunRow>((ids) => db.select().from(runs).where(inArray(runs.id, ids))),
    exploration: byId<ExplorationRow>((ids) =>
      db.select().from(explorations).where(inArray(explorations.id, ids)),
    ),
    branchesOfSession: grouped(
      (ids) => db.select().from(branches).where(inArray(branches.sessionId, ids)).orderBy(branches.createdAt),
      (b) => b.sessionId,
    ),
    childrenOfSnapshot: grouped(
      (ids) =>
        db.select().from(snapshots).where(inArray(snapshots.parentId, ids)).orderBy(snapshots.createdAt),
      (s) => s.parentId!,
    ),
    membersOfSession: grouped(
      (ids) => db.select().from(members).where(inArray(members.sessionId, ids)).orderBy(members.createdAt),
      (m) => m.sessionId,
    ),
    /** The viewer's role in each session (null: not a member). */
    role: new DataLoader<string, Role | null>(async (sessionIds) => {
      if (!viewerId) return sessionIds.map(() => null);
      const rows = await db
        .select({ sessionId: members.sessionId, role: members.role })
        .from(members)
        .where(and(eq(members.userId, viewerId), inArray(members.sessionId, [...sessionIds])));
      const map = new Map(rows.map((r) => [r.sessionId, r.role]));
      return sessionIds.map((id) => map.get(id) ?? null);
    }),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
