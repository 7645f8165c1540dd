// Sessions: create (empty, files, git), list, read, delete; members, sharing by email and by link.
import { and, eq } from "drizzle-orm";
import { CursorExpiredError, topics } from "../bus/bus.ts";
import { newId } from "../db/ids.ts";
import {
  branches,
  type MemberRow,
  members,
  type Role,
  type SessionRow,
  type ShareLinkRow,
  sessions,
  snapshots,
  users,
} from "../db/schema.ts";
import type { FileMap, SandboxBase, SnapshotInfo } from "../sandbox/provider.ts";
import { atLeast, requireRole } from "./access.ts";
import { type Context, requireScope } from "./context.ts";
import { AppError, badInput, conflict, notFound } from "./errors.ts";
import { publishSessionEvent, type SessionEventPayload } from "./events.ts";
import { keysetPage, type Page, type PageArgs } from "./pagination.ts";
import { ShareLinkRefused, verifyShareLink } from "./share-links.ts";
import { addedBytesOf } from "./snapshot-records.ts";

export interface CreateSessionInput {
  title: string;
  repoUrl?: string | null;
  ref?: string | null;
  files?: unknown;
  provider?: string | null;
}

function baseOf(input: CreateSessionInput): SandboxBase {
  if (input.repoUrl && input.files) throw badInput("Give repoUrl or files, not both", "files");
  if (input.repoUrl) return { kind: "git", url: input.repoUrl, ...(input.ref ? { ref: input.ref } : {}) };
  if (input.files === null || input.files === undefined) return { kind: "empty" };
  if (typeof input.files !== "object" || Array.isArray(input.files)) {
    throw badInput(
      'files must be an object of path -> content (or {content, encoding: "base64", mode})',
      "files",
    );
  }
  for (const [path, value] of Object.entries(input.files as Record<string, unknown>)) {
    const ok =
      typeof value === "string" ||
      (typeof value === "object" &&
        value !== null &&
        typeof (value as { content?: unknown }).content === "string");
    if (!ok) throw badInput(`files["${path}"] must be a string or {content, encoding, mode}`, "files");
  }
  return { kind: "files", files: input.files as FileMap };
}

export async function createSession(ctx: Context, input: CreateSessionInput): Promise<SessionRow> {
  const viewer = requireScope(ctx, "write");
  const title = input.title.trim();
  if (!title || title.length > 200) throw badInput("title must be 1 to 200 characters", "title");
  const provider = input.provider ?? ctx.sandboxes.defaultName;
  if (!ctx.sandboxes.has(provider)) {
    throw badInput(
      `Unknown provider "${provider}"; this server offers: ${ctx.sandboxes.names.join(", ")}`,
      "provider",
    );
  }
  const base = baseOf(input);
  await ctx.quota.assertCanCreateSession(viewer.userId);
  const sandboxes = ctx.sandboxes.get(provider);
  const sandboxId = await sandboxes.create(base);
  let info: SnapshotInfo;
  try {
    info = await sandboxes.snapshot(sandboxId);
    await ctx.quota.assertImportFits(viewer.userId, addedBytesOf(info, 0));
  } catch (error) {
    await sandboxes.destroy(sandboxId);
    throw error;
  }
  const sessionId = newId("ses");
  const branchId = newId("br");
  const snapshotId = newId("snp");
  const now = new Date();
  await ctx.db.transaction(async (tx) => {
    await tx
      .insert(sessions)
      .values({ id: sessionId, title, ownerId: viewer.userId, provider, createdAt: now });
    await tx.insert(members).values({ sessionId, userId: viewer.userId, role: "OWNER", createdAt: now });
    await tx.insert(snapshots).values({
      id: snapshotId,
      sessionId,
      parentId: null,
      providerRef: info.id,
      origin: "IMPORT",
      label: base.kind === "git" ? `import ${base.url}` : base.kind === "files" ? "import files" : "empty",
      createdById: viewer.userId,
      fileCount: info.fileCount,
      sizeBytes: info.sizeBytes,
      addedBytes: addedBytesOf(info, 0),
      createdAt: now,
    });
    await tx
      .insert(branches)
      .values({ id: branchId, sessionId, name: "main", headSnapshotId: snapshotId, createdAt: now });
    await tx
      .update(sessions)
      .set({ mainBranchId: branchId, rootSnapshotId: snapshotId })
      .where(eq(sessions.id, sessionId));
  });
  ctx.branchRuntime.adopt(branchId, sandboxId, { provider, ref: info.id });
  const [row] = await ctx.db.select().from(sessions).where(eq(sessions.id, sessionId));
  return row!;
}

export async function session(ctx: Context, id: string): Promise<SessionRow> {
  await requireRole(ctx, id, "VIEWER");
  const row = await ctx.loaders.session.load(id);
  if (!row) throw notFound("Session");
  return row;
}

/** The viewer's sessions (any role), newest first. */
export async function listSessions(ctx: Context, args: PageArgs): Promise<Page<SessionRow>> {
  const viewer = requireScope(ctx, "read");
  return keysetPage(args, { createdAt: sessions.createdAt, id: sessions.id, dir: "desc" }, async (w) =>
    (
      await ctx.db
        .select({ session: sessions })
        .from(sessions)
        .innerJoin(members, and(eq(members.sessionId, sessions.id), eq(members.userId, viewer.userId)))
        .where(w.where)
        .orderBy(...w.orderBy)
        .limit(w.limit)
    ).map((r) => r.session),
  );
}

async function branchIdsOf(ctx: Context, sessionId: string): Promise<string[]> {
  return (
    await ctx.db.select({ id: branches.id }).from(branches).where(eq(branches.sessionId, sessionId))
  ).map((b) => b.id);
}

export async function deleteSession(ctx: Context, id: string): Promise<boolean> {
  await requireRole(ctx, id, "OWNER");
  const row = await ctx.loaders.session.load(id);
  for (const branchId of await branchIdsOf(ctx, id)) {
    ctx.runner.abortBranch(branchId);
    await ctx.branchRuntime.drop(branchId);
  }
  await ctx.db.delete(sessions).where(eq(sessions.id, id));
  await publishSessionEvent(ctx, { kind: "SESSION_DELETED", sessionId: id });
  // Free the storage only this session used: every snapshot of the provider's other sessions is a root.
  if (row && ctx.sandboxes.has(row.provider)) {
    const kept = await ctx.db
      .select({ ref: snapshots.providerRef })
      .from(snapshots)
      .innerJoin(sessions, eq(sessions.id, snapshots.sessionId))
      .where(eq(sessions.provider, row.provider));
    await ctx.sandboxes.get(row.provider).gc(kept.map((k) => k.ref));
  }
  return true;
}

export async function listMembers(ctx: Context, sessionId: string): Promise<MemberRow[]> {
  return ctx.loaders.membersOfSession.load(sessionId);
}

async function upsertMember(
  ctx: Context,
  sessionId: string,
  userId: string,
  role: Role,
  keepHigher: boolean,
) {
  const [existing] = await ctx.db
    .select()
    .from(members)
    .where(and(eq(members.sessionId, sessionId), eq(members.userId, userId)));
  if (existing && keepHigher && atLeast(existing.role, role)) return existing;
  if (existing) {
    const [row] = await ctx.db
      .update(members)
      .set({ role })
      .where(and(eq(members.sessionId, sessionId), eq(members.userId, userId)))
      .returning();
    return row!;
  }
  const [row] = await ctx.db
    .insert(members)
    .values({ sessionId, userId, role, createdAt: new Date() })
    .returning();
  return row!;
}

export async function shareSession(
  ctx: Context,
  args: { sessionId: string; email: string; role: Role },
): Promise<MemberRow> {
  await requireRole(ctx, args.sessionId, "OWNER");
  const email = args.email.trim().toLowerCase();
  const [user] = await ctx.db.select({ id: users.id }).from(users).where(eq(users.email, email)).limit(1);
  if (!user) throw notFound("User with this email");
  const row = await ctx.loaders.session.load(args.sessionId);
  if (row?.ownerId === user.id && args.role !== "OWNER")
    throw conflict("The session's creator stays its owner");
  const member = await upsertMember(ctx, args.sessionId, user.id, args.role, false);
  await publishSessionEvent(ctx, { kind: "MEMBER_CHANGED", sessionId: args.sessionId, userId: user.id });
  return member;
}

export async function removeMember(
  ctx: Context,
  args: { sessionId: string; userId: string },
): Promise<boolean> {
  await requireRole(ctx, args.sessionId, "OWNER");
  const row = await ctx.loaders.session.load(args.sessionId);
  if (row?.ownerId === args.userId) throw conflict("The session's creator cannot be removed");
  const removed = await ctx.db
    .delete(members)
    .where(and(eq(members.sessionId, args.sessionId), eq(members.userId, args.userId)))
    .returning();
  if (removed.length === 0) throw notFound("Member");
  // Their open collaboration sockets and subscriptions in this session end (on every instance).
  await ctx.bus.publish(topics.accessRevoked, { sessionId: args.sessionId, userId: args.userId });
  await publishSessionEvent(ctx, { kind: "MEMBER_CHANGED", sessionId: args.sessionId, userId: args.userId });
  return true;
}

/** Redeems a share link: the viewer becomes a member with the link's role (never lowering theirs). */
export async function joinSession(ctx: Context, token: string): Promise<SessionRow> {
  const viewer = requireScope(ctx, "write");
  let link: ShareLinkRow;
  try {
    link = await verifyShareLink(ctx, token);
  } catch (error) {
    if (!(error instanceof ShareLinkRefused)) throw error;
    // A link whose row is gone went with its session.
    if (error.reason === "unknown") throw notFound("Session");
    throw new AppError("BAD_USER_INPUT", error.message, { field: "token", reason: error.reason });
  }
  const { sessionId, role } = link;
  const row = await ctx.loaders.session.load(sessionId);
  if (!row) throw notFound("Session");
  await upsertMember(ctx, sessionId, viewer.userId, role, true);
  ctx.loaders.role.clear(sessionId);
  await publishSessionEvent(ctx, { kind: "MEMBER_CHANGED", sessionId, userId: viewer.userId });
  return row;
}

export async function eventCursor(ctx: Context, sessionId: string): Promise<string> {
  return String(await ctx.bus.lastId(topics.session(sessionId)));
}

/** Live session events after `after` (a cursor from eventCursor or an earlier event). */
export async function* sessionEvents(
  ctx: Context,
  sessionId: string,
  after: string | null | undefined,
): AsyncGenerator<SessionEventPayload & { cursor: string }> {
  await requireRole(ctx, sessionId, "VIEWER");
  let from: number | undefined;
  if (after !== null && after !== undefined) {
    if (!/^\d{1,16}$/.test(after) || !Number.isSafeInteger(Number(after)))
      throw badInput("after must be a cursor from eventCursor", "after");
    from = Number(after);
  }
  const events = ctx.bus.subscribe<SessionEventPayload>(
    topics.session(sessionId),
    from === undefined ? {} : { after: from },
  );
  try {
    for await (const event of events) {
      yield { ...event.payload, cursor: String(event.id) };
      if (event.payload.kind === "SESSION_DELETED") return;
    }
  } catch (error) {
    // Events after the cursor are no longer all retained: the client must reload and read a new one.
    if (error instanceof CursorExpiredError)
      throw new AppError("BAD_USER_INPUT", error.message, { field: "after", reason: "CURSOR_EXPIRED" });
    throw error;
  } finally {
    await events.return?.();
  }
}
