// Storage quotas and creation caps. What a session keeps is the sum of its snapshots' added bytes
// (each snapshot pays for the content it added over its parent); what a user keeps is that sum over
// the sessions they own (members' runs in a shared session count against its owner). Deleting a
// session deletes its snapshots, which frees its share. What a snapshot adds is measured by its provider
// (sandbox/added-bytes.ts for local): content in whole blocks plus an overhead for every new or changed
// entry (its path and symlink target included), so files, directories and links are all paid for in
// bytes and need no separate entry (inode) quota; a snapshot's entry count is capped by the provider.
//
// Checks happen before anything is stored: a write, checkpoint, fork or new session is refused with
// QUOTA_EXCEEDED (details: scope, limit, used) once the quota is used up, and a run may write at most
// what is left (its command is stopped beyond that). Runs on different branches may overlap, so
// usage can end up a little over a quota; the run that took it over ends typed, and everything after
// is refused until space is freed. Below the host's free-disk floor every write is refused with
// UNAVAILABLE, whoever asks: the database lives on that disk too.
import { eq, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { branches, sessions, snapshots } from "../db/schema.ts";
import type { DiskSpace } from "./disk-space.ts";
import { AppError, notFound, quotaExceeded } from "./errors.ts";

export interface QuotaLimits {
  /** Bytes one command may write into its workspace. */
  commandWriteBytes: number;
  sessionBytes: number;
  userBytes: number;
  /** Sessions a user may own. */
  userSessions: number;
  branchesPerSession: number;
  minFreeDiskBytes: number;
}

/** Which limit decided: a command's write cap, a session's or a user's quota, a creation cap, the host. */
export type QuotaScope = "command" | "session" | "user" | "sessions" | "branches" | "server";

/** What a command may write now, and the limit that decides it. */
export interface WriteRoom {
  bytes: number;
  scope: QuotaScope;
  limit: number;
  used: number;
}

export interface Standing {
  ownerId: string;
  /** Bytes the session keeps. */
  session: number;
  /** Bytes its owner keeps across all their sessions. */
  user: number;
}

const KB = 1024;
const MB = 1024 * KB;
const GB = 1024 * MB;
export const formatBytes = (n: number): string =>
  n >= GB
    ? `${(n / GB).toFixed(1)} GB`
    : n >= MB
      ? `${(n / MB).toFixed(1)} MB`
      : n >= KB
        ? `${(n / KB).toFixed(1)} KB`
        : `${n} bytes`;

const WHOSE: Record<"session" | "user", string> = {
  session: "This session",
  user: "The session's owner",
};

export class Quotas {
  constructor(
    readonly limits: QuotaLimits,
    private readonly db: Db,
    private readonly disk: DiskSpace,
  ) {}

  async sessionBytes(sessionId: string): Promise<number> {
    const [row] = await this.db
      .select({ used: sql<number>`coalesce(sum(${snapshots.addedBytes}), 0)` })
      .from(snapshots)
      .where(eq(snapshots.sessionId, sessionId));
    return Number(row?.used ?? 0);
  }

  async userBytes(userId: string): Promise<number> {
    const [row] = await this.db
      .select({ used: sql<number>`coalesce(sum(${snapshots.addedBytes}), 0)` })
      .from(snapshots)
      .innerJoin(sessions, eq(sessions.id, snapshots.sessionId))
      .where(eq(sessions.ownerId, userId));
    return Number(row?.used ?? 0);
  }

  async sessionCount(userId: string): Promise<number> {
    return this.db.$count(sessions, eq(sessions.ownerId, userId));
  }

  /** The session's owner and what the session and the owner keep. */
  async standing(sessionId: string): Promise<Standing> {
    const [row] = await this.db
      .select({ ownerId: sessions.ownerId })
      .from(sessions)
      .where(eq(sessions.id, sessionId))
      .limit(1);
    if (!row) throw notFound("Session");
    const [session, user] = await Promise.all([this.sessionBytes(sessionId), this.userBytes(row.ownerId)]);
    return { ownerId: row.ownerId, session, user };
  }

  /** UNAVAILABLE when storing `incoming` more bytes would take the host below its free-disk floor. */
  async assertDiskFree(incoming = 0): Promise<void> {
    const free = await this.disk.freeBytes();
    if (free !== null && free - incoming < this.limits.minFreeDiskBytes) {
      throw new AppError("UNAVAILABLE", "The server is low on disk space; writes are paused, retry later", {
        scope: "server",
      });
    }
  }

  /** QUOTA_EXCEEDED (or UNAVAILABLE, see assertDiskFree) when the session may not store `incoming` bytes more. */
  async assertCanStore(sessionId: string, incoming = 0): Promise<void> {
    await this.assertDiskFree(incoming);
    const standing = await this.standing(sessionId);
    const refusal = this.refusal(standing, incoming);
    if (refusal) throw refusal;
  }

  /** The quota that `incoming` more bytes would break (or that is used up already), as an error. */
  refusal(standing: Standing, incoming = 0): AppError | null {
    for (const scope of ["session", "user"] as const) {
      const limit = scope === "session" ? this.limits.sessionBytes : this.limits.userBytes;
      const used = standing[scope];
      if (used >= limit || used + incoming > limit) {
        const wanted = incoming > 0 ? ` (${formatBytes(incoming)} more asked)` : "";
        return quotaExceeded(
          `${WHOSE[scope]} has used ${formatBytes(used)} of its ${formatBytes(limit)} storage quota${wanted}; delete sessions to free space`,
          { scope, limit, used },
        );
      }
    }
    return null;
  }

  /** A quota the session's storage is over now (after a run), or null. */
  async overage(sessionId: string): Promise<WriteRoom | null> {
    const standing = await this.standing(sessionId);
    if (standing.session > this.limits.sessionBytes)
      return { bytes: 0, scope: "session", limit: this.limits.sessionBytes, used: standing.session };
    if (standing.user > this.limits.userBytes)
      return { bytes: 0, scope: "user", limit: this.limits.userBytes, used: standing.user };
    return null;
  }

  /** What a command in the session may write now: the smallest of every limit's remaining room. */
  async writeRoom(sessionId: string): Promise<WriteRoom> {
    const { limits } = this;
    const [standing, free] = await Promise.all([this.standing(sessionId), this.disk.freeBytes()]);
    const rooms: WriteRoom[] = [
      { bytes: limits.commandWriteBytes, scope: "command", limit: limits.commandWriteBytes, used: 0 },
      {
        bytes: limits.sessionBytes - standing.session,
        scope: "session",
        limit: limits.sessionBytes,
        used: standing.session,
      },
      {
        bytes: limits.userBytes - standing.user,
        scope: "user",
        limit: limits.userBytes,
        used: standing.user,
      },
    ];
    if (free !== null)
      rooms.push({
        bytes: free - limits.minFreeDiskBytes,
        scope: "server",
        limit: limits.minFreeDiskBytes,
        used: 0,
      });
    return rooms.reduce((a, b) => (b.bytes < a.bytes ? b : a));
  }

  /** Before a new session: the owner's session count, storage, and the disk. */
  async assertCanCreateSession(userId: string): Promise<void> {
    await this.assertDiskFree();
    const [count, used] = await Promise.all([this.sessionCount(userId), this.userBytes(userId)]);
    if (count >= this.limits.userSessions) {
      throw quotaExceeded(`You have ${count} sessions, the most allowed; delete one to create another`, {
        scope: "sessions",
        limit: this.limits.userSessions,
        used: count,
      });
    }
    const refusal = this.refusal({ ownerId: userId, session: 0, user: used });
    if (refusal) throw refusal;
  }

  /** After importing a new session's files (before it is recorded): do they fit? */
  async assertImportFits(userId: string, bytes: number): Promise<void> {
    const used = await this.userBytes(userId);
    const refusal = this.refusal({ ownerId: userId, session: 0, user: used }, bytes);
    if (refusal) throw refusal;
  }

  /** Before new branches in a session: the branch cap, and the session may still store. */
  async assertCanBranch(sessionId: string, adding = 1): Promise<void> {
    const count = await this.db.$count(branches, eq(branches.sessionId, sessionId));
    if (count + adding > this.limits.branchesPerSession) {
      throw quotaExceeded(
        `This session has ${count} branches; at most ${this.limits.branchesPerSession} are allowed, delete some first`,
        { scope: "branches", limit: this.limits.branchesPerSession, used: count },
      );
    }
    await this.assertCanStore(sessionId);
  }
}

/** The message a run ends with when a limit stopped it (`room` is what it was allowed to write). */
export function runQuotaError(kind: "disk" | "before" | "after", room: WriteRoom): string {
  const limit = formatBytes(room.limit);
  if (room.scope === "server")
    return kind === "disk"
      ? "The server ran low on disk space while this command wrote; its writes were discarded"
      : "The server is low on disk space; the command did not run";
  if (room.scope === "command")
    return `The command wrote more than ${limit}, the most one command may write; its writes were discarded`;
  const whose = room.scope === "session" ? "this session's" : "the session owner's";
  if (kind === "disk")
    return `The command wrote more than the ${formatBytes(Math.max(0, room.bytes))} left in ${whose} ${limit} storage quota; its writes were discarded (delete sessions to free space)`;
  if (kind === "before")
    return `The command did not run: ${whose} ${limit} storage quota is used up (delete sessions to free space)`;
  return `This run took ${whose} storage over its ${limit} quota (${formatBytes(room.used)} used); its snapshot is kept, but further writes are refused until space is freed (delete sessions)`;
}
