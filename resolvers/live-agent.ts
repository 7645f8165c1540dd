// The branch side of live agents (agent/live): starting a branch's agent ahead of its first turn.
import { SESSION_ID_FILE } from "../agent/live/branch-server.ts";
import type { SandboxProvider } from "../sandbox/provider.ts";
import type { Context } from "./context.ts";
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
  const conversation = await head.provider
    .readFile({ snapshot: head.ref }, SESSION_ID_FILE)
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
