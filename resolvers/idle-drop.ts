// What happens, inside a branch's queue, before its idle live sandbox is dropped (branch-runtime.ts):
// the branch's live agent is stopped first, and nothing the sandbox holds beyond its head is lost.
//
// What a live sandbox can hold that its head snapshot does not, and where each is kept:
// - runs (agent turns included: an attached turn is a PROMPT run), writeFile and checkpoints record a
//   snapshot before their queue item ends: the head has them;
// - file-room edits are in the collab update log; the before hook writes them into a sandbox made
//   afresh at the same head (collab/rooms.ts loadUnapplied, collab/file-buffer.ts "recreated");
// - a run stopped by the disk quota, or fenced after losing its lease, is not recorded on purpose;
// - the live agent's state directory: requests through the attach proxy that are not turns (renaming,
//   deleting or reverting a conversation, answering a question) and what opencode writes after a
//   turn's snapshot (a generated title) are in no snapshot. These are CHECKPOINTED here: with the
//   agent stopped (its files settled), the workspace is frozen and compared with the head; when the
//   state directory changed, the freeze becomes a CHECKPOINT snapshot and the head moves to it. (A
//   freeze with no such change is left unreferenced: the provider's GC reclaims it.)
import { SESSION_ID_FILE } from "../agent/live/branch-server.ts";
import type { AgentPool } from "../agent/live/pool.ts";
import { AGENT_STATE_DIR } from "../agent/opencode-binary.ts";
import type { Bus } from "../bus/bus.ts";
import type { Db } from "../db/client.ts";
import type { BeforeDrop } from "./branch-runtime.ts";
import type { Logger } from "./context.ts";
import { publishSessionEvent } from "./events.ts";
import { recordSnapshot } from "./snapshot-records.ts";

export const IDLE_CHECKPOINT_LABEL = "Agent state kept before the idle workspace was dropped";

export function beforeIdleDrop(deps: {
  db: Db;
  bus: Bus;
  agents: AgentPool | null;
  log: Pick<Logger, "info" | "warn">;
}): BeforeDrop {
  return async (branchId, sandbox) => {
    const pool = deps.agents;
    if (!pool?.supports(sandbox.provider)) return true;
    // A turn is queued work, so the agent is idle here; kept anyway if it says otherwise.
    if (pool.list().some((agent) => agent.branchId === branchId && agent.busy)) return false;
    // No agent ever ran in this workspace (it would have left its conversation id): nothing to keep.
    const hadAgent =
      pool.running(branchId) !== undefined ||
      (await sandbox.files.read(SESSION_ID_FILE, { maxBytes: 4096 }).then(
        (data) => data !== null,
        () => true,
      ));
    await pool.stop(branchId);
    if (!hadAgent) return true;
    const frozen = await sandbox.provider.snapshot(sandbox.id);
    const changes = await sandbox.provider.diff(sandbox.files.head, frozen.id);
    if (!changes.some((change) => change.path.startsWith(`${AGENT_STATE_DIR}/`))) return true;
    const row = await recordSnapshot(deps.db, {
      expectedHeadRef: sandbox.files.head,
      sandboxId: sandbox.id,
      provider: sandbox.provider,
      branchId,
      origin: "CHECKPOINT",
      label: IDLE_CHECKPOINT_LABEL,
      frozen,
    });
    sandbox.setBase(row.providerRef);
    deps.log.info("kept a live agent's state before dropping its idle sandbox", {
      branchId,
      snapshotId: row.id,
    });
    for (const kind of ["SNAPSHOT_ADDED", "HEAD_MOVED"] as const)
      await publishSessionEvent(deps, { kind, sessionId: row.sessionId, branchId, snapshotId: row.id });
    return true;
  };
}
