// Branches: fork any snapshot, roll back, promote, checkpoint, write files, read files, delete.
import { and, eq } from "drizzle-orm";
import { newId } from "../db/ids.ts";
import {
  type BranchRow,
  branches,
  type Role,
  type SessionRow,
  type SnapshotRow,
  sessions,
} from "../db/schema.ts";
import { checkWorkspacePath } from "../sandbox/paths.ts";
import { type FileEntry, type FileSource, SandboxError, type SandboxProvider } from "../sandbox/provider.ts";
import { loadInSession } from "./access.ts";
import type { BranchSandbox } from "./branch-runtime.ts";
import type { Context } from "./context.ts";
import { badInput, conflict, notFound } from "./errors.ts";
import { publishSessionEvent } from "./events.ts";
import { type FileContent, listFirstFiles, pageOfFiles, readFileContent } from "./files.ts";
import { warmAgent } from "./live-agent.ts";
import type { Page, PageArgs } from "./pagination.ts";
import { headRef, recordSnapshot } from "./snapshot-records.ts";

const BRANCH_NAME = /^[A-Za-z0-9][\w.\-/]{0,63}$/;
const MAX_WRITE_BYTES = 10 * 1024 * 1024;

/** A workspace path from a client, checked up front (NUL, "..", over-long names): BAD_USER_INPUT on `field`. */
export function checkedPath(path: string, field = "path", options: { allowRoot?: boolean } = {}): string {
  try {
    return checkWorkspacePath(path, options);
  } catch (error) {
    if (error instanceof SandboxError) throw badInput(error.message, field);
    throw error;
  }
}

export const loadBranch = (ctx: Context, id: string, need: Role): Promise<BranchRow> =>
  loadInSession(ctx, ctx.loaders.branch, id, need, "Branch");

export const loadSnapshot = (ctx: Context, id: string, need: Role): Promise<SnapshotRow> =>
  loadInSession(ctx, ctx.loaders.snapshot, id, need, "Snapshot");

export async function fork(
  ctx: Context,
  args: { snapshotId: string; name?: string | null },
): Promise<BranchRow> {
  const snapshot = await loadSnapshot(ctx, args.snapshotId, "EDITOR");
  await ctx.quota.assertCanBranch(snapshot.sessionId);
  const given = args.name?.trim();
  if (given !== undefined && !BRANCH_NAME.test(given)) {
    throw badInput(
      "Branch names are 1-64 letters, digits, '.', '-', '_' or '/', starting with a letter or digit",
      "name",
    );
  }
  // Two forks at once may pick the same free name: the unique index decides, and the loser of a race
  // for an automatic name picks the next one.
  for (let attempt = 0; ; attempt++) {
    if (attempt > 0) ctx.loaders.branchesOfSession.clear(snapshot.sessionId);
    const existing = await ctx.loaders.branchesOfSession.load(snapshot.sessionId);
    const name = given || freeName(existing);
    if (existing.some((b) => b.name === name)) throw conflict(`A branch named "${name}" already exists`);
    let branch: BranchRow | undefined;
    try {
      [branch] = await ctx.db
        .insert(branches)
        .values({
          id: newId("br"),
          sessionId: snapshot.sessionId,
          name,
          headSnapshotId: snapshot.id,
          createdAt: new Date(),
        })
        .returning();
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      if (given || attempt >= 5) throw conflict(`A branch named "${name}" already exists`);
      continue;
    }
    await publishSessionEvent(ctx, {
      kind: "BRANCH_CREATED",
      sessionId: snapshot.sessionId,
      branchId: branch!.id,
      snapshotId: snapshot.id,
    });
    // A fork of the agent's work continues its conversation in a server of its own: start it now.
    await warmAgent(ctx, branch!.id, {
      provider: await providerOf(ctx, snapshot.sessionId),
      ref: snapshot.providerRef,
    }).catch((error) => ctx.log.warn("agent warm-up failed", { error: String(error) }));
    return branch!;
  }
}

/** "fork-N", the first N from the branch count up that no branch has. */
function freeName(existing: readonly BranchRow[]): string {
  const taken = new Set(existing.map((b) => b.name));
  let n = existing.length;
  while (taken.has(`fork-${n}`)) n++;
  return `fork-${n}`;
}

const isUniqueViolation = (error: unknown) =>
  String((error as { cause?: unknown })?.cause ?? error).includes("UNIQUE constraint failed");

export async function rollback(
  ctx: Context,
  args: { branchId: string; snapshotId: string },
): Promise<BranchRow> {
  const branch = await loadBranch(ctx, args.branchId, "EDITOR");
  const snapshot = await ctx.loaders.snapshot.load(args.snapshotId);
  if (!snapshot || snapshot.sessionId !== branch.sessionId) throw notFound("Snapshot");
  const session = await ctx.loaders.session.load(branch.sessionId);
  if (!session) throw notFound("Branch");
  // Queued behind the branch's runs, so a rollback never lands in the middle of one.
  await ctx.branchRuntime.enqueue(
    branch.id,
    async () => {
      await ctx.db.update(branches).set({ headSnapshotId: snapshot.id }).where(eq(branches.id, branch.id));
      return { provider: session.provider, ref: snapshot.providerRef };
    },
    async () => {},
  );
  await publishSessionEvent(ctx, {
    kind: "HEAD_MOVED",
    sessionId: branch.sessionId,
    branchId: branch.id,
    snapshotId: snapshot.id,
  });
  const [row] = await ctx.db.select().from(branches).where(eq(branches.id, branch.id));
  return row!;
}

export async function promote(ctx: Context, branchId: string): Promise<SessionRow> {
  const branch = await loadBranch(ctx, branchId, "OWNER");
  const [row] = await ctx.db
    .update(sessions)
    .set({ mainBranchId: branch.id })
    .where(eq(sessions.id, branch.sessionId))
    .returning();
  await publishSessionEvent(ctx, { kind: "MAIN_CHANGED", sessionId: branch.sessionId, branchId: branch.id });
  return row!;
}

/** Freezes the branch's live files as a snapshot (after queued runs) and moves the head to it. */
async function snapshotBranch(
  ctx: Context,
  branch: BranchRow,
  origin: "CHECKPOINT" | "WRITE",
  label: string | null,
  before?: (sandbox: BranchSandbox) => Promise<void>,
): Promise<SnapshotRow> {
  const snapshot = await ctx.branchRuntime.enqueue(
    branch.id,
    () => headRef(ctx.db, branch.id),
    async (sandbox) => {
      await before?.(sandbox);
      const row = await recordSnapshot(ctx.db, {
        sandboxId: sandbox.id,
        provider: sandbox.provider,
        branchId: branch.id,
        origin,
        label,
        userId: ctx.viewer?.userId ?? null,
      });
      sandbox.setBase(row.providerRef);
      return row;
    },
  );
  await publishSessionEvent(ctx, {
    kind: "SNAPSHOT_ADDED",
    sessionId: branch.sessionId,
    branchId: branch.id,
    snapshotId: snapshot.id,
  });
  await publishSessionEvent(ctx, {
    kind: "HEAD_MOVED",
    sessionId: branch.sessionId,
    branchId: branch.id,
    snapshotId: snapshot.id,
  });
  return snapshot;
}

export async function checkpoint(
  ctx: Context,
  args: { branchId: string; label?: string | null },
): Promise<SnapshotRow> {
  const branch = await loadBranch(ctx, args.branchId, "EDITOR");
  const label = args.label?.trim() || null;
  if (label && label.length > 200) throw badInput("label must be at most 200 characters", "label");
  await ctx.quota.assertCanStore(branch.sessionId);
  return snapshotBranch(ctx, branch, "CHECKPOINT", label);
}

export async function writeFile(
  ctx: Context,
  args: { branchId: string; path: string; content: string },
): Promise<SnapshotRow> {
  const branch = await loadBranch(ctx, args.branchId, "EDITOR");
  checkedPath(args.path);
  const data = new TextEncoder().encode(args.content);
  if (data.byteLength > MAX_WRITE_BYTES)
    throw badInput(`content must be at most ${MAX_WRITE_BYTES} bytes`, "content");
  await ctx.quota.assertCanStore(branch.sessionId, data.byteLength);
  return snapshotBranch(ctx, branch, "WRITE", `write ${args.path}`, (sandbox) =>
    sandbox.provider.writeFile(sandbox.id, args.path, data),
  );
}

export async function deleteBranch(ctx: Context, id: string): Promise<boolean> {
  const branch = await loadBranch(ctx, id, "EDITOR");
  const session = await ctx.loaders.session.load(branch.sessionId);
  if (session?.mainBranchId === branch.id)
    throw conflict("The main branch cannot be deleted; promote another first");
  ctx.runner.abortBranch(branch.id);
  await ctx.branchRuntime.drop(branch.id);
  await ctx.db
    .delete(branches)
    .where(and(eq(branches.id, branch.id), eq(branches.sessionId, branch.sessionId)));
  await publishSessionEvent(ctx, {
    kind: "BRANCH_DELETED",
    sessionId: branch.sessionId,
    branchId: branch.id,
  });
  return true;
}

/**
 * "running" (a run is queued or running on it, on whichever instance), "idle" (its workspace is live,
 * here or on the instance that owns it) or "stopped". Batched: a list of branches costs one query.
 */
export async function branchStatus(ctx: Context, branch: BranchRow): Promise<"running" | "idle" | "stopped"> {
  if (await ctx.loaders.branchBusy.load(branch.id)) return "running";
  return ctx.branchRuntime.sandboxOf(branch.id) ? "idle" : "stopped";
}

/** Files of the branch as it is now: its live sandbox here if it has one, else its head snapshot. */
async function sourceOf(
  ctx: Context,
  branch: BranchRow,
): Promise<{ provider: SandboxProvider; source: FileSource }> {
  const sandbox = ctx.branchRuntime.sandboxOf(branch.id);
  if (sandbox) return { provider: sandbox.provider, source: { sandbox: sandbox.id } };
  const head = await ctx.loaders.snapshot.load(branch.headSnapshotId);
  return { provider: await providerOf(ctx, branch.sessionId), source: { snapshot: head!.providerRef } };
}

/** The first entries of a directory of the branch as it is now (see MAX_LISTED_FILES). */
export async function branchFiles(
  ctx: Context,
  branch: BranchRow,
  path: string | null | undefined,
): Promise<FileEntry[]> {
  const dir = checkedPath(path ?? "", "path", { allowRoot: true });
  const { provider, source } = await sourceOf(ctx, branch);
  return listFirstFiles(provider, source, dir);
}

/** A page of a directory's entries of the branch as it is now. */
export async function branchFileEntries(
  ctx: Context,
  branch: BranchRow,
  args: PageArgs & { path?: string | null },
): Promise<Page<FileEntry>> {
  const dir = checkedPath(args.path ?? "", "path", { allowRoot: true });
  const { provider, source } = await sourceOf(ctx, branch);
  return pageOfFiles(provider, source, dir, args);
}

export async function branchFile(ctx: Context, branch: BranchRow, path: string): Promise<FileContent | null> {
  checkedPath(path);
  const { provider, source } = await sourceOf(ctx, branch);
  return readFileContent(ctx, provider, source, path);
}

/** The sandbox provider a session was created with. */
export async function providerOf(ctx: Context, sessionId: string): Promise<SandboxProvider> {
  const session = await ctx.loaders.session.load(sessionId);
  if (!session) throw notFound("Session");
  return ctx.sandboxes.get(session.provider);
}
