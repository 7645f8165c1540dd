// Text changes applied to a Y.Text as small edits rather than a wholesale replace, so collaborators'
// cursors and selections outside the changed spans stay where they were.
import { diffChars } from "diff";
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
  // Never cut a surrogate pair (an emoji) in half: Yjs would store the halves as U+FFFD.
  if (start > 0 && isHighSurrogate(from.charCodeAt(start - 1))) start--;
  if (end > 0 && isLowSurrogate(from.charCodeAt(from.length - end))) end--;
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

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;
const isLowSurrogate = (code: number) => code >= 0xdc00 && code <= 0xdfff;
