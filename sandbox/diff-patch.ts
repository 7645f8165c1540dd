// One file's unified patch, bounded. jsdiff (Myers) costs O(N·D): a file whose lines all changed
// costs the square of its length (12,000 lines took 32 s). So it gives up past an edit distance or a
// time limit and the patch is omitted (TOO_COMPLEX) instead. Pure and synchronous: it runs on a diff
// worker thread (sandbox/diff-worker.ts), off the server's event loop.
import { createTwoFilesPatch } from "diff";

export interface PatchJob {
  /** "a/path" or "/dev/null" (added), as in git's headers. */
  oldName: string;
  /** "b/path" or "/dev/null" (deleted). */
  newName: string;
  before: string;
  after: string;
  /**
   * Edit distance (lines removed plus lines added) worth computing beyond the difference in line
   * counts, which every diff needs anyway (an added file, an appended log) and which costs little.
   */
  maxEditLength: number;
  /** jsdiff's own time limit, checked between edit-distance steps. */
  timeoutMs: number;
}

/** The patch, or null when computing it would cost more than the job allows. */
export function makePatch(job: PatchJob): string | null {
  const patch = createTwoFilesPatch(job.oldName, job.newName, job.before, job.after, undefined, undefined, {
    context: 3,
    maxEditLength: Math.abs(lineCount(job.before) - lineCount(job.after)) + job.maxEditLength,
    timeout: job.timeoutMs,
  });
  return patch ?? null;
}

function lineCount(text: string): number {
  let count = 0;
  for (let at = text.indexOf("\n"); at !== -1; at = text.indexOf("\n", at + 1)) count++;
  return count;
}
