// Text changes applied to a Y.Text as small edits rather than a wholesale replace, so collaborators'
// cursors and selections outside the changed spans stay where they were. Also a three-way merge for
// a file changed on disk while people kept typing.
import { applyPatch, diffChars, structuredPatch } from "diff";
import type * as Y from "yjs";

/** Beyond this edit distance a character diff costs too much; the changed middle is replaced whole. */
const MAX_EDIT_LENGTH = 2000;

/** Turns `text` (whose current value is `from`) into `to` with the fewest inserts and deletes found. */
export function applyTextChange(text: Y.Text, to: string, origin: unknown): void {
  const from = text.toString();
  if (from === to) return;
  let start = 0;
  const shortest = Math.min(from.length, to.length);
  while (start < shortest && from.charCodeAt(start) === to.charCodeAt(start)) start++;
  let end = 0;
  while (
    end < shortest - start &&
    from.charCodeAt(from.length - 1 - end) === to.charCodeAt(to.length - 1 - end)
  )
    end++;
  const oldMiddle = from.slice(start, from.length - end);
  const newMiddle = to.slice(start, to.length - end);
  const changes = diffChars(oldMiddle, newMiddle, { maxEditLength: MAX_EDIT_LENGTH }) ?? [
    { value: oldMiddle, removed: true, added: false },
    { value: newMiddle, removed: false, added: true },
  ];
  text.doc!.transact(() => {
    let at = start;
    for (const change of changes) {
      if (change.removed) text.delete(at, change.value.length);
      else if (change.added) {
        text.insert(at, change.value);
        at += change.value.length;
      } else at += change.value.length;
    }
  }, origin);
}

/**
 * Three-way merge of line changes: what changed from `base` to `theirs` applied onto `ours`. Null
 * when the two sides touched the same lines.
 */
export function mergeText(base: string, ours: string, theirs: string): string | null {
  if (ours === base) return theirs;
  if (theirs === base || theirs === ours) return ours;
  const patch = structuredPatch("a", "b", base, theirs, "", "", { context: 1 });
  const merged = applyPatch(ours, patch);
  return merged === false ? null : merged;
}
