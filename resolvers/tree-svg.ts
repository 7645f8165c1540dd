// A picture of a session's snapshot tree for dashboards: snapshots as nodes (oldest on the left),
// branch heads labelled, the main branch's line of history highlighted, failed runs marked.
// Linear in the snapshots drawn, without recursion (a history can be deeper than the call stack),
// and at most MAX_TREE_NODES of them (the newest): it runs on the event loop.
import { and, count, desc, eq, inArray } from "drizzle-orm";
import { type BranchRow, branches, runs, type SnapshotRow, snapshots } from "../db/schema.ts";
import { requireRole } from "./access.ts";
import type { Context } from "./context.ts";
import { notFound } from "./errors.ts";

const DX = 56;
const DY = 34;
const PAD = 24;
const LABEL_ROOM = 170;
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
  const known = new Set(input.snapshots.map((s) => s.id));
  const children = new Map<string | null, SnapshotRow[]>();
  for (const s of input.snapshots) {
    const key = s.parentId && known.has(s.parentId) ? s.parentId : null;
    const siblings = children.get(key);
    if (siblings) siblings.push(s);
    else children.set(key, [s]);
  }
  // Rows: depth-first, each leaf a new row; a parent sits on its first child's row, which is the row
  // its subtree starts on (an explicit stack rather than recursion).
  const pos = new Map<string, { x: number; y: number }>();
  let nextRow = 0;
  let maxX = 0;
  const stack = (children.get(null) ?? []).map((node) => ({ node, depth: 0 })).reverse();
  while (stack.length > 0) {
    const { node, depth } = stack.pop()!;
    const x = PAD + depth * DX;
    maxX = Math.max(maxX, x);
    pos.set(node.id, { x, y: PAD + nextRow * DY });
    const kids = children.get(node.id);
    if (!kids) nextRow++;
    else for (let i = kids.length - 1; i >= 0; i--) stack.push({ node: kids[i]!, depth: depth + 1 });
  }

  const byId = new Map(input.snapshots.map((s) => [s.id, s]));
  const main = input.branches.find((b) => b.id === input.mainBranchId);
  const mainLine = new Set<string>();
  for (
    let id: string | null | undefined = main?.headSnapshotId;
    id && byId.has(id);
    id = byId.get(id)!.parentId
  )
    mainLine.add(id);

  const omitted = input.omitted ?? 0;
  const width = maxX + PAD + LABEL_ROOM;
  const height = (Math.max(nextRow, 1) + (omitted > 0 ? 1 : 0)) * DY + PAD;
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
    const title = `${s.origin.toLowerCase()}${s.label ? `: ${s.label}` : ""} (${s.id}, ${s.fileCount} files)`;
    parts.push(
      `<g class="snapshot" data-id="${s.id}"><title>${escapeXml(title)}</title>` +
        `<circle cx="${p.x}" cy="${p.y}" r="9" fill="${failed ? "#dc2626" : COLORS[s.origin]}" stroke="#fff" stroke-width="2"/>` +
        (failed
          ? `<path d="M${p.x - 4},${p.y - 4} L${p.x + 4},${p.y + 4} M${p.x + 4},${p.y - 4} L${p.x - 4},${p.y + 4}" stroke="#fff" stroke-width="2"/>`
          : "") +
        "</g>",
    );
  }
  const labels = new Map<string, BranchRow[]>();
  for (const b of input.branches) {
    const heads = labels.get(b.headSnapshotId);
    if (heads) heads.push(b);
    else labels.set(b.headSnapshotId, [b]);
  }
  for (const [snapshotId, heads] of labels) {
    const p = pos.get(snapshotId);
    if (!p) continue;
    let x = p.x + 16;
    for (const b of heads) {
      const isMain = b.id === input.mainBranchId;
      const w = 12 + b.name.length * 7.2;
      parts.push(
        `<g class="branch${isMain ? " main" : ""}" data-id="${b.id}"><rect x="${x}" y="${p.y - 10}" width="${w}" height="20" rx="10" ` +
          `fill="${isMain ? "#f59e0b" : "#e2e8f0"}"/><text x="${x + 6}" y="${p.y + 4}" font-size="12" font-family="ui-monospace,monospace" ` +
          `font-weight="${isMain ? 700 : 400}" fill="#0f172a">${escapeXml(b.name)}</text></g>`,
      );
      x += w + 6;
    }
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
