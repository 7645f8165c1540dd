// The snapshot-tree picture: laid out in one pass without recursion, so a long history neither
// overflows the stack nor costs quadratic time on the event loop.
import { expect, test } from "bun:test";
import type { SnapshotRow } from "../../db/schema.ts";
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
