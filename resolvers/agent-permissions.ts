// Permission requests you can answer: a session's agent runs unattended (ALLOW) or asks before it
// edits, runs commands or fetches (ASK; agent/permissions.ts). Owners choose the mode; editors answer
// an ask of a running turn (runs on the session's branches apply the mode from their next turn).
import { eq } from "drizzle-orm";
import type { AgentPermissionMode, PermissionReply } from "../agent/permissions.ts";
import { type RunRow, runs, type SessionRow, sessions } from "../db/schema.ts";
import { requireRole } from "./access.ts";
import { providerOf } from "./branch.ts";
import type { Context } from "./context.ts";
import { AppError, badInput, notFound } from "./errors.ts";
import { loadRun } from "./run.ts";

const MAX_MESSAGE = 2000;

export async function setAgentPermissions(
  ctx: Context,
  args: { sessionId: string; mode: AgentPermissionMode },
): Promise<SessionRow> {
  await requireRole(ctx, args.sessionId, "OWNER", "Session");
  // A per-turn agent (`opencode run` in a microVM) cannot be reached while it waits for an answer.
  if (args.mode === "ASK" && (await providerOf(ctx, args.sessionId)).status.agentMode !== "live")
    throw new AppError(
      "NOT_SUPPORTED",
      "This session's agent runs one turn at a time out of reach (provider contree): it cannot ask for approval",
    );
  const [row] = await ctx.db
    .update(sessions)
    .set({ agentPermissions: args.mode })
    .where(eq(sessions.id, args.sessionId))
    .returning();
  if (!row) throw notFound("Session");
  ctx.loaders.session.clear(row.id).prime(row.id, row);
  return row;
}

/** Replies to a permission ask of a running turn; the answer is an event of the run. */
export async function answerPermission(
  ctx: Context,
  args: { runId: string; permissionId: string; reply: PermissionReply; message?: string | null },
): Promise<RunRow> {
  const run = await loadRun(ctx, args.runId, "EDITOR");
  if (!args.permissionId.trim() || args.permissionId.length > 200)
    throw badInput("Unknown permission id", "permissionId");
  if (args.message && args.message.length > MAX_MESSAGE)
    throw badInput(`message must be at most ${MAX_MESSAGE} characters`, "message");
  await ctx.runner.answerPermission(run.id, args.permissionId, {
    reply: args.reply,
    message: args.message?.trim() ? args.message : null,
    userId: ctx.viewer!.userId,
  });
  const [row] = await ctx.db.select().from(runs).where(eq(runs.id, run.id));
  return row!;
}
