// Recording snapshots: freeze a branch's live sandbox, add the snapshot to the session's tree with the
// branch head as parent, and move the head. Used by runs, checkpoints and writes alike. Each records
// the bytes it added over its parent, which storage quotas sum.
import { and, eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { newId } from "../db/ids.ts";
import { branches, type SNAPSHOT_ORIGINS, type SnapshotRow, sessions, snapshots } from "../db/schema.ts";
import type { SandboxProvider, SnapshotInfo } from "../sandbox/provider.ts";
import type { BranchHead } from "./branch-runtime.ts";
import { conflict, notFound } from "./errors.ts";

/** A branch's head as its provider knows it (the session's provider, the head's provider snapshot). */
export async function headRef(db: Db, branchId: string): Promise<BranchHead> {
  const [row] = await db
    .select({ ref: snapshots.providerRef, provider: sessions.provider })
    .from(branches)
    .innerJoin(snapshots, eq(snapshots.id, branches.headSnapshotId))
    .innerJoin(sessions, eq(sessions.id, branches.sessionId))
    .where(eq(branches.id, branchId))
    .limit(1);
  if (!row) throw notFound("Branch");
  return row;
}

export async function recordSnapshot(
  db: Db,
  input: {
    sandboxId: string;
    provider: SandboxProvider;
    branchId: string;
    origin: (typeof SNAPSHOT_ORIGINS)[number];
    label?: string | null;
    runId?: string | null;
    userId?: string | null;
    /** Move the head only if it still shows this provider snapshot (a run's fencing: cluster/). */
    expectedHeadRef?: string;
    /** The sandbox's freeze when the caller already took it (nothing written since): not taken again. */
    frozen?: SnapshotInfo;
  },
): Promise<SnapshotRow> {
  const info = input.frozen ?? (await input.provider.snapshot(input.sandboxId));
  const [branch] = await db.select().from(branches).where(eq(branches.id, input.branchId)).limit(1);
  if (!branch) throw notFound("Branch");
  const [parent] = await db
    .select({ sizeBytes: snapshots.sizeBytes, providerRef: snapshots.providerRef })
    .from(snapshots)
    .where(eq(snapshots.id, branch.headSnapshotId))
    .limit(1);
  const moved = () => conflict("The branch's head moved while this snapshot was taken");
  if (input.expectedHeadRef !== undefined && parent?.providerRef !== input.expectedHeadRef) throw moved();
  const row = await db.transaction(async (tx) => {
    const [snapshot] = await tx
      .insert(snapshots)
      .values({
        id: newId("snp"),
        sessionId: branch.sessionId,
        parentId: branch.headSnapshotId,
        providerRef: info.id,
        origin: input.origin,
        label: input.label ?? null,
        runId: input.runId ?? null,
        createdById: input.userId ?? null,
        fileCount: info.fileCount,
        sizeBytes: info.sizeBytes,
        addedBytes: addedBytesOf(info, parent?.sizeBytes ?? 0),
        createdAt: info.createdAt,
      })
      .returning();
    // Compare-and-set on the head read above: nothing that moved it meanwhile is overwritten.
    const [updated] = await tx
      .update(branches)
      .set({ headSnapshotId: snapshot!.id })
      .where(and(eq(branches.id, branch.id), eq(branches.headSnapshotId, branch.headSnapshotId)))
      .returning({ id: branches.id });
    if (!updated) throw moved();
    return snapshot!;
  });
  return row;
}

/**
 * What a snapshot added over its parent, as its provider measured it. A provider that cannot tell
 * (ConTree: images are opaque, and comparing two archives per run would double the downloads) is
 * charged the growth of the workspace, which misses content replaced at the same size.
 */
export function addedBytesOf(info: SnapshotInfo, parentSizeBytes: number): number {
  return info.addedBytes ?? Math.max(0, info.sizeBytes - parentSizeBytes);
}
