// Where the nodes and branch labels of a snapshot tree go: shared by the server's tree.svg
// (resolvers/tree-svg.ts) and the session page, which draws the same layout live in the browser.
// Plain JavaScript (types in tree-layout.d.ts) so the browser loads this very file.
//
// Snapshots are nodes, oldest on the left. Rows: depth-first, a parent sits on its first child's row
// (so a line of history is one row), and a new row opens after a leaf. A branch head's labels go to
// the right of its node; so that nothing else is ever there, a labelled snapshot with children ends
// its row too (its first child starts the next one). Every row is then a chain of nodes ending at
// a leaf or a labelled head, and labels never cover a node, another row's label or an edge: edges
// run down from a parent's x (left of every label below it) and then right on the child's row.
// Linear in the snapshots, without recursion (a history can be deeper than the call stack).

export const DX = 56;
export const DY = 34;
export const PAD = 24;
export const NODE_RADIUS = 9;
export const LABEL_HEIGHT = 20;
/** From a node's centre to its first label, and between labels. */
export const LABEL_OFFSET = 16;
export const LABEL_GAP = 6;
/** Inside a label, left and right of its text. */
export const LABEL_PADDING = 6;

/**
 * Width of a label's text in the labels' font (12px monospace: ~7.2px per character; branch names
 * are ASCII). The browser measures the real text instead.
 * @param {string} text
 */
export function estimateTextWidth(text) {
  return [...text].length * 7.2;
}

/**
 * @param {{
 *   snapshots: { id: string, parentId: string | null }[],
 *   heads: { key: string, snapshotId: string, text: string }[],
 *   textWidth?: (text: string) => number,
 *   extraRows?: number,
 * }} input
 */
export function layoutTree(input) {
  const textWidth = input.textWidth ?? estimateTextWidth;
  const known = new Set(input.snapshots.map((s) => s.id));
  /** @type {Map<string | null, string[]>} */
  const children = new Map();
  for (const s of input.snapshots) {
    const key = s.parentId && known.has(s.parentId) ? s.parentId : null;
    const siblings = children.get(key);
    if (siblings) siblings.push(s.id);
    else children.set(key, [s.id]);
  }
  /** @type {Map<string, typeof input.heads>} */
  const headsAt = new Map();
  for (const h of input.heads) {
    if (!known.has(h.snapshotId)) continue;
    const list = headsAt.get(h.snapshotId);
    if (list) list.push(h);
    else headsAt.set(h.snapshotId, [h]);
  }

  /** @type {Map<string, { x: number, y: number }>} */
  const positions = new Map();
  let rows = 0;
  let right = 0;
  const stack = (children.get(null) ?? []).map((id) => ({ id, depth: 0 })).reverse();
  while (stack.length > 0) {
    const { id, depth } = /** @type {{ id: string, depth: number }} */ (stack.pop());
    const x = PAD + depth * DX;
    right = Math.max(right, x + NODE_RADIUS);
    positions.set(id, { x, y: PAD + rows * DY });
    const kids = children.get(id);
    // A leaf ends its row; so does a labelled head, keeping the space right of it for its labels.
    if (!kids || headsAt.has(id)) rows++;
    if (kids) for (let i = kids.length - 1; i >= 0; i--) stack.push({ id: kids[i], depth: depth + 1 });
  }

  /** @type {{ key: string, snapshotId: string, text: string, x: number, y: number, width: number, height: number }[]} */
  const labels = [];
  for (const [snapshotId, heads] of headsAt) {
    const p = /** @type {{ x: number, y: number }} */ (positions.get(snapshotId));
    let x = p.x + LABEL_OFFSET;
    for (const h of heads) {
      const width = Math.ceil(textWidth(h.text)) + 2 * LABEL_PADDING;
      labels.push({ ...h, x, y: p.y - LABEL_HEIGHT / 2, width, height: LABEL_HEIGHT });
      x += width + LABEL_GAP;
    }
    right = Math.max(right, x - LABEL_GAP);
  }

  const width = Math.max(right + PAD, 2 * PAD);
  const height = (Math.max(rows, 1) + (input.extraRows ?? 0)) * DY + PAD;
  return { positions, labels, rows, width, height };
}
