// The snapshot-tree picture: laid out in one pass without recursion, so a long history neither
// overflows the stack nor costs quadratic time on the event loop.
import { expect, test } from "bun:test";
import type { BranchRow, SnapshotRow } from "../../db/schema.ts";
import { renderTree } from "../../resolvers/tree-svg.ts";

const snapshot = (id: string, parentId: string | null) =>
  ({ id, parentId, origin: "RUN", label: null, runId: null, fileCount: 1 }) as unknown as SnapshotRow;

const circleOf = (svg: string, id: string) => {
  const m = new RegExp(`data-id="${id}"><title>[^<]*</title><circle cx="(\\d+)" cy="(\\d+)"`).exec(svg);
  return m ? { x: Number(m[1]), y: Number(m[2]) } : null;
};

test("a parent sits on its first child's row; later children open new rows", () => {
  const svg = renderTree({
    snapshots: [snapshot("r", null), snapshot("a", "r"), snapshot("b", "r"), snapshot("a2", "a")],
    branches: [],
    failedRuns: new Set(),
    mainBranchId: null,
  });
  expect(circleOf(svg, "r")).toEqual({ x: 24, y: 24 });
  expect(circleOf(svg, "a")).toEqual({ x: 80, y: 24 });
  expect(circleOf(svg, "a2")).toEqual({ x: 136, y: 24 });
  expect(circleOf(svg, "b")).toEqual({ x: 80, y: 58 });
});

test("a history 50,000 snapshots deep renders (no recursion), and left-out snapshots are noted", () => {
  const chain = Array.from({ length: 50_000 }, (_, i) => snapshot(`s${i}`, i ? `s${i - 1}` : null));
  const svg = renderTree({
    snapshots: chain,
    branches: [],
    failedRuns: new Set(),
    mainBranchId: null,
    omitted: 7,
  });
  expect(circleOf(svg, "s49999")).toEqual({ x: 24 + 49_999 * 56, y: 24 });
  expect(svg).toContain("7 older snapshots not shown");
});

// Geometry of the drawn picture, read back from the SVG: label pills and node circles.
const circles = (svg: string) =>
  [...svg.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)" r="([\d.]+)"[^>]*stroke-width="([\d.]+)"/g)].map(
    (m) => ({
      cx: Number(m[1]),
      cy: Number(m[2]),
      r: Number(m[3]) + Number(m[4]) / 2,
    }),
  );
const labelBoxes = (svg: string) =>
  [
    ...svg.matchAll(
      /<g class="branch[^"]*" data-id="([^"]+)"><rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"/g,
    ),
  ].map((m) => ({ id: m[1]!, x: Number(m[2]), y: Number(m[3]), w: Number(m[4]), h: Number(m[5]) }));
const svgWidth = (svg: string) => Number(/<svg [^>]*width="([\d.]+)"/.exec(svg)![1]);

type Box = { x: number; y: number; w: number; h: number };
const boxesOverlap = (a: Box, b: Box) =>
  a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
const boxHitsCircle = (b: Box, c: { cx: number; cy: number; r: number }) => {
  const nx = Math.max(b.x, Math.min(c.cx, b.x + b.w));
  const ny = Math.max(b.y, Math.min(c.cy, b.y + b.h));
  return (nx - c.cx) ** 2 + (ny - c.cy) ** 2 < c.r ** 2;
};

/** Every label against every node and every other label; and inside the picture. */
function overlaps(svg: string): string[] {
  const found: string[] = [];
  const labels = labelBoxes(svg);
  for (const l of labels) {
    for (const c of circles(svg))
      if (boxHitsCircle(l, c)) found.push(`${l.id} covers the node at ${c.cx},${c.cy}`);
    for (const o of labels) if (o !== l && boxesOverlap(l, o)) found.push(`${l.id} overlaps ${o.id}`);
    if (l.x + l.w > svgWidth(svg)) found.push(`${l.id} runs past the picture's right edge`);
  }
  return found;
}

const branch = (id: string, name: string, headSnapshotId: string) =>
  ({ id, name, headSnapshotId }) as unknown as BranchRow;

test("main's label does not cover the first child's node when a branch forks right after main's head", () => {
  // main stays at h; "feature" was forked from h and ran once (c is h's child, on h's row).
  const svg = renderTree({
    snapshots: [snapshot("r", null), snapshot("h", "r"), snapshot("c", "h")],
    branches: [branch("b_main", "main", "h"), branch("b_feature", "feature", "c")],
    failedRuns: new Set(),
    mainBranchId: "b_main",
  });
  expect(labelBoxes(svg)).toHaveLength(2);
  expect(overlaps(svg)).toEqual([]);
});

test("labels never overlap: several heads on one snapshot with children, long names, forks of forks", () => {
  const snaps = [snapshot("r", null), snapshot("a", "r"), snapshot("b", "a"), snapshot("c", "b")];
  snaps.push(snapshot("d", "a"), snapshot("e", "d"), snapshot("f", "r"), snapshot("g", "f"));
  const branches = [
    branch("b1", "main", "a"),
    branch("b2", "x".repeat(64), "a"),
    branch("b3", "explore/cand-1", "b"),
    branch("b4", "explore/cand-2", "c"),
    branch("b5", "fix/the-long-branch-name-here", "d"),
    branch("b6", "r-head", "r"),
    branch("b7", "g", "g"),
  ];
  const svg = renderTree({ snapshots: snaps, branches, failedRuns: new Set(), mainBranchId: "b1" });
  expect(labelBoxes(svg)).toHaveLength(branches.length);
  expect(overlaps(svg)).toEqual([]);
});
