// Snapshots: the session's tree, their files, and diffs between any two of one session.
import { and, eq } from "drizzle-orm";
import { type SnapshotRow, snapshots } from "../db/schema.ts";
import type { DiffEntry, FileEntry } from "../sandbox/provider.ts";
import { checkedPath, loadSnapshot, providerOf } from "./branch.ts";
import type { Context } from "./context.ts";
import { badInput } from "./errors.ts";
import { type FileContent, listFirstFiles, pageOfFiles, readFileContent } from "./files.ts";
import { keysetPage, type Page, type PageArgs } from "./pagination.ts";

export const snapshot = (ctx: Context, id: string) => loadSnapshot(ctx, id, "VIEWER");

/** The whole tree of a session, flat, oldest first (parents always before their children). */
export async function sessionSnapshots(
  ctx: Context,
  sessionId: string,
  args: PageArgs,
): Promise<Page<SnapshotRow>> {
  const listing = { createdAt: snapshots.createdAt, id: snapshots.id, dir: "asc", defaultSize: 100 } as const;
  return keysetPage(args, listing, (w) =>
    ctx.db
      .select()
      .from(snapshots)
      .where(and(eq(snapshots.sessionId, sessionId), w.where))
      .orderBy(...w.orderBy)
      .limit(w.limit),
  );
}

/** The first entries of a directory of the snapshot (see MAX_LISTED_FILES). */
export async function snapshotFiles(
  ctx: Context,
  row: SnapshotRow,
  path: string | null | undefined,
): Promise<FileEntry[]> {
  const dir = checkedPath(path ?? "", "path", { allowRoot: true });
  const provider = await providerOf(ctx, row.sessionId);
  return listFirstFiles(provider, { snapshot: row.providerRef }, dir);
}

/** A page of a directory's entries of the snapshot. */
export async function snapshotFileEntries(
  ctx: Context,
  row: SnapshotRow,
  args: PageArgs & { path?: string | null },
): Promise<Page<FileEntry>> {
  const dir = checkedPath(args.path ?? "", "path", { allowRoot: true });
  const provider = await providerOf(ctx, row.sessionId);
  return pageOfFiles(provider, { snapshot: row.providerRef }, dir, args);
}

export async function snapshotFile(
  ctx: Context,
  row: SnapshotRow,
  path: string,
): Promise<FileContent | null> {
  checkedPath(path);
  const provider = await providerOf(ctx, row.sessionId);
  return readFileContent(ctx, provider, { snapshot: row.providerRef }, path);
}

export interface SnapshotDiff {
  from: SnapshotRow;
  to: SnapshotRow;
  /** The first MAX_DIFF_FILES changes, by path. */
  files: DiffEntry[];
  totalFiles: number;
}

/** Changes one diff lists: GraphQL builds and serialises every one of them on the event loop. */
export const MAX_DIFF_FILES = 10_000;

export async function diff(ctx: Context, fromId: string, toId: string): Promise<SnapshotDiff> {
  const [from, to] = await Promise.all([
    loadSnapshot(ctx, fromId, "VIEWER"),
    loadSnapshot(ctx, toId, "VIEWER"),
  ]);
  if (from.sessionId !== to.sessionId) throw badInput("Both snapshots must belong to the same session", "to");
  const provider = await providerOf(ctx, from.sessionId);
  const files = await provider.diff(from.providerRef, to.providerRef);
  return { from, to, files: files.slice(0, MAX_DIFF_FILES), totalFiles: files.length };
}
