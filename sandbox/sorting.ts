// Sorting names of directories of any size without holding the event loop: a 150,000-name directory
// read in its on-disk (hash) order takes ~300 ms to sort in one go, time in which the server answers
// nothing. Both helpers work in slices and yield between them. Order is UTF-16 code units (`<`), as
// the default Array#sort orders strings.

/** Items handled between two yields to the event loop. */
const SLICE = 10_000;

export const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** `items` sorted (in place for small arrays; a new array otherwise): sorted slices, then merged. */
export async function sortInSlices(items: string[]): Promise<string[]> {
  if (items.length <= SLICE) return items.sort();
  let runs: string[][] = [];
  for (let i = 0; i < items.length; i += SLICE) {
    runs.push(items.slice(i, i + SLICE).sort());
    await yieldToEventLoop();
  }
  while (runs.length > 1) {
    const next: string[][] = [];
    for (let i = 0; i < runs.length; i += 2)
      next.push(i + 1 < runs.length ? await mergeInSlices(runs[i]!, runs[i + 1]!) : runs[i]!);
    runs = next;
  }
  return runs[0]!;
}

async function mergeInSlices(a: string[], b: string[]): Promise<string[]> {
  const out = new Array<string>(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length || j < b.length) {
    const end = Math.min(out.length, k + SLICE);
    for (; k < end; k++) out[k] = j >= b.length || (i < a.length && a[i]! < b[j]!) ? a[i++]! : b[j++]!;
    if (k < out.length) await yieldToEventLoop();
  }
  return out;
}

/**
 * The `limit` smallest of `items`, sorted, without sorting them all: candidates are kept below the
 * current `limit`-th smallest, so past the first slices most items cost one comparison. Items are
 * distinct (names in one directory).
 */
export function smallestInOrder(items: readonly string[], limit: number): Promise<string[]> {
  return nearestInOrder(items, limit, "start");
}

/** The `limit` largest of `items`, largest first (as smallestInOrder, from the other end). */
export function largestInOrder(items: readonly string[], limit: number): Promise<string[]> {
  return nearestInOrder(items, limit, "end");
}

async function nearestInOrder(
  items: readonly string[],
  limit: number,
  from: "start" | "end",
): Promise<string[]> {
  if (limit <= 0) return [];
  const nearer = from === "start" ? (a: string, b: string) => a < b : (a: string, b: string) => a > b;
  let kept: string[] = [];
  let pending: string[] = [];
  let bound: string | undefined;
  const settle = () => {
    kept = [...kept, ...pending].sort();
    if (from === "end") kept.reverse();
    kept = kept.slice(0, limit);
    pending = [];
    if (kept.length === limit) bound = kept[limit - 1];
  };
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    if (bound === undefined || nearer(item, bound)) pending.push(item);
    if (pending.length >= Math.max(limit, 1024)) settle();
    if (i % SLICE === SLICE - 1) await yieldToEventLoop();
  }
  settle();
  return kept;
}
