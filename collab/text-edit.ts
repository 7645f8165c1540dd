// Text changes applied to a Y.Text as small edits rather than a wholesale replace, so collaborators'
// cursors and selections outside the changed spans stay where they were.
//
// This runs on the event loop (file rooms call it when a run changes an open file of up to 1 MiB),
// so its cost is bounded. A character diff of a whole file is quadratic in the worst case and even
// its tokenising costs ~100 ms per MiB, so: trim the common prefix and suffix; diff the rest by lines
// (few tokens, cheap); refine only changed hunks of modest size by characters. Every jsdiff call
// shares one small time budget and an edit-distance cap, and whatever does not fit is replaced whole:
// still exact, only cursors inside that span move.
import { diffChars, diffLines } from "diff";
import type * as Y from "yjs";

/** Time all the diffs of one change may take together. */
const BUDGET_MS = 25;
/** Beyond these edit distances a diff costs too much; its span is replaced whole. */
const MAX_LINE_EDITS = 1000;
const MAX_CHAR_EDITS = 1000;
/** A span longer than this (UTF-16 units, either side) is diffed by lines, not characters. */
const MAX_CHAR_DIFF = 16 * 1024;

interface Change {
  value: string;
  added?: boolean;
  removed?: boolean;
}

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
  const changes = textChanges(from.slice(start, from.length - end), to.slice(start, to.length - end));
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

/** The changes from `before` to `after`, within the time budget. */
export function textChanges(before: string, after: string, budgetMs = BUDGET_MS): Change[] {
  const deadline = performance.now() + budgetMs;
  if (before.length <= MAX_CHAR_DIFF && after.length <= MAX_CHAR_DIFF)
    return charChanges(before, after, deadline);
  const lines = diffLines(before, after, { maxEditLength: MAX_LINE_EDITS, timeout: remaining(deadline) });
  if (!lines) return replaced(before, after);
  // Refine each run of removed and added lines by characters (a line edited in place keeps the
  // cursors on it), as long as the budget lasts.
  const out: Change[] = [];
  let removed = "";
  let added = "";
  const flush = () => {
    if (removed && added && removed.length <= MAX_CHAR_DIFF && added.length <= MAX_CHAR_DIFF)
      out.push(...charChanges(removed, added, deadline));
    else out.push(...replaced(removed, added));
    removed = added = "";
  };
  for (const change of lines) {
    if (change.removed) removed += change.value;
    else if (change.added) added += change.value;
    else {
      flush();
      out.push({ value: change.value });
    }
  }
  flush();
  return out;
}

function charChanges(before: string, after: string, deadline: number): Change[] {
  const timeout = remaining(deadline);
  if (timeout === 0) return replaced(before, after);
  return diffChars(before, after, { maxEditLength: MAX_CHAR_EDITS, timeout }) ?? replaced(before, after);
}

/** `before` deleted and `after` inserted, whole. */
function replaced(before: string, after: string): Change[] {
  const out: Change[] = [];
  if (before) out.push({ value: before, removed: true });
  if (after) out.push({ value: after, added: true });
  return out;
}

const remaining = (deadline: number) => Math.max(0, Math.floor(deadline - performance.now()));

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;
const isLowSurrogate = (code: number) => code >= 0xdc00 && code <= 0xdfff;
