// A picture of a session's snapshot tree for dashboards: snapshots as nodes (oldest on the left),
// branch heads labelled, the main branch's line of history highlighted, failed runs marked.
import { eq, inArray } from "drizzle-orm";
import { type BranchRow, branches, type RunRow, runs, type SnapshotRow, snapshots } from "../db/schema.ts";
import { requireRole } from "./access.ts";
import type { Context } from "./context.ts";
import { notFound } from "./errors.ts";

const DX = 56;
const DY = 34;
const PAD = 24;
const LABEL_ROOM = 170;

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
}): string {
  const children = new Map<string | null, SnapshotRow[]>();
  for (const s of input.snapshots) {
    const key = s.parentId && input.snapshots.some((p) => p.id === s.parentId) ? s.parentId : null;
    children.set(key, [...(children.get(key) ?? []), s]);
  }
  // Rows: depth-first, each leaf a new row; a parent sits on its first child's row.
  const pos = new Map<string, { x: number; y: number }>();
  let nextRow = 0;
  const place = (node: SnapshotRow, depth: number): number => {
    const kids = children.get(node.id) ?? [];
    let row = nextRow;
    if (kids.length === 0) nextRow++;
    else
      kids.forEach((kid, i) => {
        const r = place(kid, depth + 1);
        if (i === 0) row = r;
      });
    pos.set(node.id, { x: PAD + depth * DX, y: PAD + row * DY });
    return row;
  };
  for (const root of children.get(null) ?? []) place(root, 0);

  const byId = new Map(input.snapshots.map((s) => [s.id, s]));
  const main = input.branches.find((b) => b.id === input.mainBranchId);
  const mainLine = new Set<string>();
  for (
    let id: string | null | undefined = main?.headSnapshotId;
    id && byId.has(id);
    id = byId.get(id)!.parentId
  )
    mainLine.add(id);

  const width = Math.max(...[...pos.values()].map((p) => p.x), 0) + PAD + LABEL_ROOM;
  const height = Math.max(nextRow, 1) * DY + PAD;
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
    const p = pos.get(s.id)!;
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
  for (const b of input.branches) labels.set(b.headSnapshotId, [...(labels.get(b.headSnapshotId) ?? []), b]);
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
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="Snapshot tree"><rect width="100%" height="100%" fill="#ffffff"/>${parts.join("")}</svg>`;
}

export async function sessionTreeSvg(ctx: Context, sessionId: string): Promise<string> {
  await requireRole(ctx, sessionId, "VIEWER");
  const session = await ctx.loaders.session.load(sessionId);
  if (!session) throw notFound("Session");
  const [snaps, heads] = await Promise.all([
    ctx.db.select().from(snapshots).where(eq(snapshots.sessionId, sessionId)).orderBy(snapshots.createdAt),
    ctx.db.select().from(branches).where(eq(branches.sessionId, sessionId)),
  ]);
  const runIds = snaps.map((s) => s.runId).filter((id): id is string => id !== null);
  const failed: RunRow[] = runIds.length
    ? await ctx.db.select().from(runs).where(inArray(runs.id, runIds))
    : [];
  return renderTree({
    snapshots: snaps,
    branches: heads,
    failedRuns: new Set(
      failed.filter((r) => r.status === "FAILED" || r.status === "INTERRUPTED").map((r) => r.id),
    ),
    mainBranchId: session.mainBranchId,
  });
}
