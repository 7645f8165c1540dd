// Types of tree-layout.js (plain JavaScript so the browser loads the same file the server runs).

export declare const DX: number;
export declare const DY: number;
export declare const PAD: number;
export declare const NODE_RADIUS: number;
export declare const LABEL_HEIGHT: number;
export declare const LABEL_OFFSET: number;
export declare const LABEL_GAP: number;
export declare const LABEL_PADDING: number;

export interface TreeHead {
  /** Identifies the label (a branch id). */
  key: string;
  snapshotId: string;
  text: string;
}

export interface PlacedLabel extends TreeHead {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface TreeLayout {
  /** Centre of each snapshot's node. */
  positions: Map<string, { x: number; y: number }>;
  labels: PlacedLabel[];
  rows: number;
  width: number;
  height: number;
}

export declare function estimateTextWidth(text: string): number;

export declare function layoutTree(input: {
  snapshots: { id: string; parentId: string | null }[];
  heads: TreeHead[];
  /** Width of a label's text; estimateTextWidth by default. */
  textWidth?: (text: string) => number;
  /** Rows to leave below the tree (e.g. for a note). */
  extraRows?: number;
}): TreeLayout;
