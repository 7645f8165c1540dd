// Draws a session's snapshot tree as SVG in the page, with the layout tree.svg uses
// (tree-layout.js): nodes coloured by origin, failed runs marked, branch heads labelled with the
// scores of explored branches, the main line highlighted. Nodes and labels are buttons (click, Enter
// or Space) that select a snapshot or a branch.
import { s } from "./dom.js";
import { LABEL_PADDING, layoutTree, NODE_RADIUS } from "./tree-layout.js";

export const FAILED_STATUSES = new Set(["FAILED", "INTERRUPTED"]);

/**
 * @typedef {{ id: string, parentId: string | null, origin: string, label: string | null,
 *   fileCount: number, createdAt: string, createdBy: { id: string, status: string } | null }} Snapshot
 * @typedef {{ id: string, name: string, isMain: boolean, head: { id: string } }} Branch
 * @typedef {{ score: number | null, passed: boolean | null }} Score
 */

/** @param {Branch} branch @param {Score | undefined} score */
function labelText(branch, score) {
  if (!score) return branch.name;
  if (score.score !== null) return `${branch.name} · ${Number(score.score.toFixed(3))}`;
  if (score.passed === false) return `${branch.name} · failed`;
  return branch.name;
}

/** @param {Snapshot} snap */
const describe = (snap, failed) =>
  `${snap.origin.toLowerCase()} snapshot ${snap.id}${snap.label ? ` "${snap.label}"` : ""}, ` +
  `${snap.fileCount} file${snap.fileCount === 1 ? "" : "s"}${failed ? ", its run failed" : ""}`;

/** Calls `action` on click, Enter and Space. @param {() => void} action */
const activate = (action) => ({
  onclick: action,
  onkeydown: (/** @type {KeyboardEvent} */ event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      action();
    }
  },
});

/**
 * @param {SVGSVGElement} svg
 * @param {{
 *   snapshots: Snapshot[], branches: Branch[], mainBranchId: string | null,
 *   scores: Map<string, Score>, selectedSnapshotId: string | null, selectedBranchId: string | null,
 *   onSelectSnapshot: (id: string) => void, onSelectBranch: (id: string) => void,
 * }} model
 */
export function drawTree(svg, model) {
  const focused = document.activeElement?.closest?.("[data-id]")?.getAttribute("data-id");
  // Labels are sized by the browser's own measure of their text (bold: the wider of the two weights).
  const measure = s("text", { class: "label-text main", x: 0, y: -100 });
  svg.replaceChildren(s("title", {}, "Snapshot tree"), measure);
  const textWidth = (/** @type {string} */ text) => {
    measure.textContent = text;
    return measure.getComputedTextLength();
  };
  const byId = new Map(model.snapshots.map((snap) => [snap.id, snap]));
  const heads = model.branches
    .filter((b) => byId.has(b.head.id))
    .map((b) => ({ key: b.id, snapshotId: b.head.id, text: labelText(b, model.scores.get(b.id)) }));
  const layout = layoutTree({ snapshots: model.snapshots, heads, textWidth });
  measure.remove();
  svg.setAttribute("width", String(layout.width));
  svg.setAttribute("height", String(layout.height));
  svg.setAttribute("viewBox", `0 0 ${layout.width} ${layout.height}`);

  const mainHead = model.branches.find((b) => b.id === model.mainBranchId)?.head.id;
  const mainLine = new Set();
  for (let id = mainHead; id && byId.has(id); id = byId.get(id)?.parentId ?? undefined) mainLine.add(id);

  for (const snap of model.snapshots) {
    const p = layout.positions.get(snap.id);
    const parent = snap.parentId ? layout.positions.get(snap.parentId) : undefined;
    if (!p || !parent) continue;
    const main = mainLine.has(snap.id) && mainLine.has(snap.parentId);
    svg.append(
      s("path", { class: main ? "edge main" : "edge", d: `M${parent.x},${parent.y} V${p.y} H${p.x}` }),
    );
  }
  for (const snap of model.snapshots) {
    const p = layout.positions.get(snap.id);
    if (!p) continue;
    const failed = snap.createdBy !== null && FAILED_STATUSES.has(snap.createdBy.status);
    const selected = snap.id === model.selectedSnapshotId;
    const label = describe(snap, failed);
    svg.append(
      s(
        "g",
        {
          class: `snapshot origin-${snap.origin.toLowerCase()}${failed ? " failed" : ""}${selected ? " selected" : ""}`,
          "data-id": snap.id,
          tabindex: 0,
          role: "button",
          "aria-pressed": String(selected),
          "aria-label": label,
          ...activate(() => model.onSelectSnapshot(snap.id)),
        },
        s("title", {}, label),
        s("circle", { cx: p.x, cy: p.y, r: NODE_RADIUS }),
        failed &&
          s("path", {
            class: "cross",
            d: `M${p.x - 4},${p.y - 4} L${p.x + 4},${p.y + 4} M${p.x + 4},${p.y - 4} L${p.x - 4},${p.y + 4}`,
          }),
      ),
    );
  }
  for (const l of layout.labels) {
    const isMain = l.key === model.mainBranchId;
    const selected = l.key === model.selectedBranchId;
    svg.append(
      s(
        "g",
        {
          class: `branch${isMain ? " main" : ""}${selected ? " selected" : ""}`,
          "data-id": l.key,
          tabindex: 0,
          role: "button",
          "aria-pressed": String(selected),
          "aria-label": `branch ${l.text}${isMain ? " (main)" : ""}`,
          ...activate(() => model.onSelectBranch(l.key)),
        },
        s("rect", { x: l.x, y: l.y, width: l.width, height: l.height, rx: l.height / 2 }),
        s(
          "text",
          { class: `label-text${isMain ? " main" : ""}`, x: l.x + LABEL_PADDING, y: l.y + 14 },
          l.text,
        ),
      ),
    );
  }
  if (focused) svg.querySelector(`[data-id="${CSS.escape(focused)}"]`)?.focus();
}
