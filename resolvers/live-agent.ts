// The branch side of live agents (agent/live): starting a branch's agent ahead of its first turn, and
// reaching it for the attach proxy.
import { type BranchServer, SESSION_ID_FILE } from "../agent/live/branch-server.ts";
import type { SandboxProvider } from "../sandbox/provider.ts";
import type { Context } from "./context.ts";
import { AppError } from "./errors.ts";
import { headRef } from "./snapshot-records.ts";

/**
 * Starts a new branch's live agent in the background when the snapshot it starts from holds a
 * conversation (a fork of an agent's work is usually prompted next); nothing when its provider runs
 * agents per turn. The branch's queue is held only to make the sandbox, not while the server starts.
 */
export async function warmAgent(
  ctx: Pick<Context, "agents" | "branchRuntime" | "db" | "log">,
  branchId: string,
  head: { provider: SandboxProvider; ref: string },
): Promise<void> {
  const pool = ctx.agents;
  if (!pool?.supports(head.provider)) return;
  // Bounded: the file is the workspace user's to make any size (over it, no warm-up).
  const conversation = await head.provider
    .readFile({ snapshot: head.ref }, SESSION_ID_FILE, { maxBytes: 4096 })
    .catch(() => null);
  if (!conversation) return;
  void ctx.branchRuntime
    .enqueue(
      branchId,
      () => headRef(ctx.db, branchId),
      async (sandbox) => {
        pool.acquire(branchId, sandbox).catch((error) =>
          ctx.log.warn("could not start a branch's agent ahead of its turn", {
            branchId,
            error: String(error),
          }),
        );
      },
    )
    .catch(() => {});
}

/**
 * The branch's live agent server: the running one, or one started now (after the branch's queued
 * work, which is waited for only to make the sandbox). NOT_SUPPORTED where agents run per turn.
 */
export async function liveAgentOf(
  ctx: Pick<Context, "agents" | "branchRuntime" | "db">,
  branchId: string,
): Promise<BranchServer> {
  const pool = ctx.agents;
  const perTurn = () =>
    new AppError(
      "NOT_SUPPORTED",
      "This branch's agent runs one turn at a time (its sandbox provider cannot keep it live), so it cannot be attached to",
    );
  if (!pool) throw perTurn();
  const running = pool.running(branchId);
  if (running) return running;
  // Wrapped, so the queue item ends once the start is under way rather than when it is done.
  const { server } = await ctx.branchRuntime.enqueue(
    branchId,
    () => headRef(ctx.db, branchId),
    async (sandbox) => {
      if (!pool.supports(sandbox.provider)) throw perTurn();
      return { server: pool.acquire(branchId, sandbox) };
    },
  );
  return server;
}

/**
 * Where opencode's own clients reach the branch's live agent (`opencode attach <url> -p <API key>`):
 * the attach proxy; null where the session's provider runs the agent per turn.
 */
export async function agentUrlOf(
  ctx: Pick<Context, "agents" | "publicUrl" | "sandboxes" | "loaders">,
  branch: { id: string; sessionId: string },
): Promise<string | null> {
  const session = await ctx.loaders.session.load(branch.sessionId);
  if (!ctx.agents || !session || !ctx.sandboxes.has(session.provider)) return null;
  if (!ctx.agents.supports(ctx.sandboxes.get(session.provider))) return null;
  return `${ctx.publicUrl.replace(/\/+$/, "")}/agent/${encodeURIComponent(branch.id)}`;
}
