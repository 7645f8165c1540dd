// Who may do what in a session. Viewers read and subscribe; editors also run, write, checkpoint and
// fork; owners also delete, share and promote. A session the viewer is not a member of does not
// exist for them: the same NOT_FOUND as a missing id, so no query reveals another tenant's objects.
// A subscription keeps needing the role it checked: it ends when the viewer loses it (ctx.access).
import type DataLoader from "dataloader";
import type { Role } from "../db/schema.ts";
import { type Context, requireScope, requireViewer } from "./context.ts";
import { forbidden, notFound } from "./errors.ts";

const RANK: Record<Role, number> = { VIEWER: 1, EDITOR: 2, OWNER: 3 };

export const atLeast = (role: Role | null, need: Role) => role !== null && RANK[role] >= RANK[need];

/**
 * The viewer's role in the session, when it is at least `need`. `what` names the object the caller
 * looked up (a branch, a run...), so a stranger's NOT_FOUND reads exactly like a missing object's.
 */
export async function requireRole(
  ctx: Context,
  sessionId: string,
  need: Role,
  what = "Session",
): Promise<Role> {
  if (need === "VIEWER") requireScope(ctx, "read");
  else requireScope(ctx, "write");
  requireViewer(ctx);
  // In a live subscription the role stays required for its whole life: watched from before this
  // check, so a change made while it runs is not missed.
  ctx.access?.need(sessionId, need);
  const role = await ctx.loaders.role.load(sessionId);
  if (role === null) throw notFound(what);
  if (!atLeast(role, need)) {
    throw forbidden(`This needs the ${need} role in the session; you are ${role}`);
  }
  return role;
}

/**
 * Owner-only data that is still a read (a session's share links): the OWNER role, but a read-scoped
 * credential is enough, as for every other query.
 */
export async function requireOwnerToRead(ctx: Context, sessionId: string, what = "Session"): Promise<void> {
  const role = await requireRole(ctx, sessionId, "VIEWER", what);
  if (role !== "OWNER") throw forbidden(`This needs the OWNER role in the session; you are ${role}`);
}

/** An object of some session (branch, snapshot, run) by id, when the viewer's role allows `need`. */
export async function loadInSession<T extends { sessionId: string }>(
  ctx: Context,
  loader: DataLoader<string, T | null>,
  id: string,
  need: Role,
  what: string,
): Promise<T> {
  const row = await loader.load(id);
  if (!row) throw notFound(what);
  await requireRole(ctx, row.sessionId, need, what);
  return row;
}
