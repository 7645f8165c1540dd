// A picture of a session's snapshot tree for dashboards: snapshots as nodes (oldest on the left),
// branch heads labelled, the main branch's line of history highlighted, failed runs marked.
// Laid out by web/session-page/tree-layout.js (linear, without recursion: a history can be deeper
// than the call stack; labels never cover a node or each other), at most MAX_TREE_NODES snapshots
// (the newest): it runs on the event loop.
import { and, count, desc, eq, inArray } from "drizzle-orm";
import { type BranchRow, branches, runs, type SnapshotRow, snapshots } from "../db/schema.ts";
import { LABEL_PADDING, layoutTree, NODE_RADIUS, PAD } from "../web/session-page/tree-layout.js";
import { requireRole } from "./access.ts";
import type { Context } from "./context.ts";
import { notFound } from "./errors.ts";

/** Snapshots drawn at most (the newest); a note says how many older ones are left out. */
export const MAX_TREE_NODES = 2000;

const COLORS: Record<SnapshotRow["origin"], string> = {
  IMPORT: "#6b7280",
  CHECKPOINT: "#2563eb",
  RUN: "#16a34a",
  WRITE: "#9333ea",
};

const escapeXml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

export function renderTree(input: {
  snapshots: SnapshotRow[];
  branches: BranchRow[];
  failedRuns: Set<string>;
  mainBranchId: string | null;
  /** Older snapshots left out of `snapshots`. */
  omitted?: number;
}): string {
  const omitted = input.omitted ?? 0;
  // The session page draws the same layout in the browser (web/session-page/tree-layout.js).
  const {
    positions: pos,
    labels,
    width,
    height,
  } = layoutTree({
    snapshots: input.snapshots,
    heads: input.branches.map((b) => ({ key: b.id, snapshotId: b.headSnapshotId, text: b.name })),
    extraRows: omitted > 0 ? 1 : 0,
  });

  const byId = new Map(input.snapshots.map((s) => [s.id, s]));
  const main = input.branches.find((b) => b.id === input.mainBranchId);
  const mainLine = new Set<string>();
  for (
    let id: string | null | undefined = main?.headSnapshotId;
    id && byId.has(id);
    id = byId.get(id)!.parentId
  )
    mainLine.add(id);

  const parts: string[] = [];
  for (const s of input.snapshots) {
    const p = pos.get(s.id);
    const parent = s.parentId ? pos.get(s.parentId) : undefined;
    if (!p || !parent) continue;
    const strong = mainLine.has(s.id) && mainLine.has(s.parentId!);
    parts.push(
      `<path d="M${parent.x},${parent.y} V${p.y} H${p.x}" fill="none" stroke="${strong ? "#f59e0b" : "#cbd5e1"}" stroke-width="${strong ? 4 : 2}"/>`,
    );
  }
  for (const s of input.snapshots) {
    const p = pos.get(s.id);
    if (!p) continue;
    const failed = s.runId !== null && input.failedRuns.has(s.runId);
    const title = `${s.origin.toLowerCase()}${s.label ? `: ${s.label}` : ""} (${s.id}, ${s.fileCount} files)${failed ? ", run failed" : ""}`;
    parts.push(
      `<g class="snapshot" data-id="${escapeXml(s.id)}"><title>${escapeXml(title)}</title>` +
        `<circle cx="${p.x}" cy="${p.y}" r="${NODE_RADIUS}" fill="${failed ? "#dc2626" : COLORS[s.origin]}" stroke="#fff" stroke-width="2"/>` +
        (failed
          ? `<path d="M${p.x - 4},${p.y - 4} L${p.x + 4},${p.y + 4} M${p.x + 4},${p.y - 4} L${p.x - 4},${p.y + 4}" stroke="#fff" stroke-width="2"/>`
          : "") +
        "</g>",
    );
  }
  for (const l of labels) {
    const isMain = l.key === input.mainBranchId;
    parts.push(
      `<g class="branch${isMain ? " main" : ""}" data-id="${escapeXml(l.key)}"><rect x="${l.x}" y="${l.y}" width="${l.width}" height="${l.height}" rx="10" ` +
        `fill="${isMain ? "#f59e0b" : "#e2e8f0"}"/><text x="${l.x + LABEL_PADDING}" y="${l.y + 14}" font-size="12" font-family="ui-monospace,monospace" ` +
        `font-weight="${isMain ? 700 : 400}" fill="#0f172a">${escapeXml(l.text)}</text></g>`,
    );
  }
  if (omitted > 0)
    parts.push(
      `<text class="omitted" x="${PAD}" y="${height - PAD / 2}" font-size="12" font-family="ui-monospace,monospace" fill="#64748b">` +
        `${omitted} older snapshot${omitted === 1 ? "" : "s"} not shown</text>`,
    );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="Snapshot tree"><rect width="100%" height="100%" fill="#ffffff"/>${parts.join("")}</svg>`;
}

export async function sessionTreeSvg(ctx: Context, sessionId: string): Promise<string> {
  await requireRole(ctx, sessionId, "VIEWER");
  const session = await ctx.loaders.session.load(sessionId);
  if (!session) throw notFound("Session");
  const [newest, heads] = await Promise.all([
    ctx.db
      .select()
      .from(snapshots)
      .where(eq(snapshots.sessionId, sessionId))
      .orderBy(desc(snapshots.createdAt), desc(snapshots.id))
      .limit(MAX_TREE_NODES + 1),
    ctx.db.select().from(branches).where(eq(branches.sessionId, sessionId)),
  ]);
  let omitted = 0;
  if (newest.length > MAX_TREE_NODES) {
    newest.pop();
    const [all] = await ctx.db
      .select({ n: count() })
      .from(snapshots)
      .where(eq(snapshots.sessionId, sessionId));
    omitted = (all?.n ?? 0) - newest.length;
  }
  const snaps = newest.reverse();
  const runIds = snaps.map((s) => s.runId).filter((id): id is string => id !== null);
  const failed = runIds.length
    ? await ctx.db
        .select({ id: runs.id })
        .from(runs)
        .where(and(inArray(runs.id, runIds), inArray(runs.status, ["FAILED", "INTERRUPTED"])))
    : [];
  return renderTree({
    snapshots: snaps,
    branches: heads,
    failedRuns: new Set(failed.map((r) => r.id)),
    mainBranchId: session.mainBranchId,
    omitted,
  });
}
