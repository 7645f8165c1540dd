// Differences between two snapshots' manifests: added/modified/deleted entries, with unified patches
// (jsdiff, a well-kept implementation of Myers' algorithm) for text files. Every patch is bounded, per
// file (size, edit distance, time: sandbox/diff-patch.ts) and per diff (files, bytes and time spent
// patching), and a file whose patch is left out says why (DiffEntry.patchOmitted). Patches are made
// by a Patcher: the server's worker pool (sandbox/diff-pool.ts), off the event loop.
import { makePatch, type PatchJob } from "./diff-patch.ts";
import { WorkerPoolError } from "./diff-pool.ts";
import type { Manifest, ManifestEntry } from "./manifest.ts";
import { type DiffEntry, type PatchOmitted, SandboxError } from "./provider.ts";

export interface DiffLimits {
  /** A file larger than this (either side) gets no patch: TOO_LARGE. */
  maxFileBytes: number;
  /** Edit distance in lines (beyond the change in line count) a patch may cost: TOO_COMPLEX past it. */
  maxEditLength: number;
  /** Time jsdiff may spend on one file: TOO_COMPLEX past it. */
  fileTimeoutMs: number;
  /** Per diff: files patched, bytes read for patches, time spent patching (BUDGET_EXCEEDED after). */
  maxFiles: number;
  maxBytes: number;
  maxTimeMs: number;
}

export const DIFF_LIMITS: DiffLimits = {
  maxFileBytes: 1024 * 1024,
  maxEditLength: 3000,
  fileTimeoutMs: 1000,
  maxFiles: 500,
  maxBytes: 16 * 1024 * 1024,
  maxTimeMs: 10_000,
};

/** Computes one patch; null when it costs more than the job allows. May throw WorkerPoolError. */
export type Patcher = (job: PatchJob) => Promise<string | null>;

/** On the calling thread, for tools and unit tests; the server hands providers its diff pool instead. */
export const inlinePatcher: Patcher = async (job) => makePatch(job);

const typeName = (e: ManifestEntry) =>
  (e.t === "f" ? "file" : e.t === "d" ? "dir" : "symlink") as DiffEntry["type"];

/** Text means valid UTF-8 without NUL bytes (what git also calls binary, roughly). */
export function isBinary(data: Uint8Array): boolean {
  return diffText(data) === null;
}

/** The whole content as text: valid UTF-8 without any NUL byte; null when it is binary. */
export function utf8Text(data: Uint8Array): string | null {
  if (data.includes(0)) return null;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(data);
  } catch {
    return null;
  }
}

export async function diffManifests(
  from: Manifest,
  to: Manifest,
  read: (hash: string) => Promise<Uint8Array>,
  patcher: Patcher = inlinePatcher,
  limits: DiffLimits = DIFF_LIMITS,
): Promise<DiffEntry[]> {
  const budget = new PatchBudget(limits);
  const describe = (path: string, change: DiffEntry["change"], a?: ManifestEntry, b?: ManifestEntry) =>
    describeEntry({ path, change, a, b, read, patcher, limits, budget });
  const out: DiffEntry[] = [];
  let done = 0;
  for (const path of await changedPaths(from, to)) {
    if (++done % YIELD_EVERY === 0) await pause();
    const a = from.get(path);
    const b = to.get(path);
    if (a && b && a.t !== b.t) {
      // A file became a directory (or similar): report the old one gone and the new one added.
      out.push(await describe(path, "deleted", a, undefined));
      out.push(await describe(path, "added", undefined, b));
      continue;
    }
    out.push(await describe(path, a && b ? "modified" : a ? "deleted" : "added", a, b));
  }
  return out;
}

// Trees can hold hundreds of thousands of entries (a build's output), and sorting that many paths at
// once holds the event loop for a second: the listing yields every so often and sorts in pieces.
const YIELD_EVERY = 5000;
const pause = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** Paths whose entry differs between the manifests, in path (UTF-16 code unit) order. */
async function changedPaths(from: Manifest, to: Manifest): Promise<string[]> {
  const changed: string[] = [];
  let seen = 0;
  for (const [path, b] of to) {
    if (++seen % YIELD_EVERY === 0) await pause();
    const a = from.get(path);
    if (!a || a.t !== b.t || a.m !== b.m || a.h !== b.h || a.l !== b.l) changed.push(path);
  }
  for (const path of from.keys()) {
    if (++seen % YIELD_EVERY === 0) await pause();
    if (!to.has(path)) changed.push(path);
  }
  // Sorted runs of YIELD_EVERY paths, then merged pairwise, with a pause between steps.
  let runs: string[][] = [];
  for (let i = 0; i < changed.length; i += YIELD_EVERY) {
    runs.push(changed.slice(i, i + YIELD_EVERY).sort());
    if (changed.length > YIELD_EVERY) await pause();
  }
  while (runs.length > 1) {
    const merged: string[][] = [];
    for (let i = 0; i < runs.length; i += 2) {
      merged.push(i + 1 < runs.length ? merge(runs[i]!, runs[i + 1]!) : runs[i]!);
      await pause();
    }
    runs = merged;
  }
  return runs[0] ?? [];
}

function merge(left: string[], right: string[]): string[] {
  const out = new Array<string>(left.length + right.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < left.length && j < right.length) out[k++] = left[i]! <= right[j]! ? left[i++]! : right[j++]!;
  while (i < left.length) out[k++] = left[i++]!;
  while (j < right.length) out[k++] = right[j++]!;
  return out;
}

/** What one diff may still spend on patches. */
class PatchBudget {
  private files = 0;
  private bytes = 0;
  private readonly started = performance.now();

  constructor(private readonly limits: DiffLimits) {}

  /** Takes one file of `bytes` from the budget; false when it no longer fits. */
  take(bytes: number): boolean {
    const { maxFiles, maxBytes, maxTimeMs } = this.limits;
    if (this.files >= maxFiles || this.bytes + bytes > maxBytes) return false;
    if (performance.now() - this.started > maxTimeMs) return false;
    this.files++;
    this.bytes += bytes;
    return true;
  }
}

const sizeOf = (entry: ManifestEntry | undefined) =>
  !entry ? 0 : entry.t === "l" ? (entry.l?.length ?? 0) + 1 : entry.t === "f" ? entry.s : 0;

async function contentOf(entry: ManifestEntry | undefined, read: (hash: string) => Promise<Uint8Array>) {
  if (!entry) return new Uint8Array();
  if (entry.t === "l") return new TextEncoder().encode(`${entry.l}\n`);
  if (entry.t === "f") return read(entry.h!);
  return new Uint8Array();
}

/** The text a patch is made of: valid UTF-8 without NUL bytes near the start; null for binary. */
function diffText(data: Uint8Array): string | null {
  if (data.subarray(0, 8000).includes(0)) return null;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(data);
  } catch {
    return null;
  }
}

async function describeEntry(input: {
  path: string;
  change: DiffEntry["change"];
  a: ManifestEntry | undefined;
  b: ManifestEntry | undefined;
  read: (hash: string) => Promise<Uint8Array>;
  patcher: Patcher;
  limits: DiffLimits;
  budget: PatchBudget;
}): Promise<DiffEntry> {
  const { path, change, a, b, read } = input;
  const entry = (b ?? a)!;
  const result: DiffEntry = { path, change, type: typeName(entry), binary: false };
  if (a) result.oldMode = a.m;
  if (b) result.newMode = b.m;
  if (entry.t === "d") return result;
  const omit = (reason: PatchOmitted) => {
    result.patchOmitted = reason;
    return result;
  };
  // A mode change only: nothing to patch, though a (small enough) file is still read for `binary`.
  const sameContent = !!a && !!b && a.h === b.h && a.l === b.l;
  if (sizeOf(a) > input.limits.maxFileBytes || sizeOf(b) > input.limits.maxFileBytes)
    return sameContent ? result : omit("TOO_LARGE");
  if (!input.budget.take(sizeOf(a) + (sameContent ? 0 : sizeOf(b))))
    return sameContent ? result : omit("BUDGET_EXCEEDED");
  const before = diffText(await contentOf(a, read));
  const after = sameContent ? before : diffText(await contentOf(b, read));
  if (before === null || after === null) {
    result.binary = true;
    return sameContent ? result : omit("BINARY");
  }
  if (sameContent) return result;
  const patch = await patchOrOmission(input.patcher, {
    oldName: a ? `a/${path}` : "/dev/null",
    newName: b ? `b/${path}` : "/dev/null",
    before,
    after,
    maxEditLength: input.limits.maxEditLength,
    timeoutMs: input.limits.fileTimeoutMs,
  });
  if (patch === null) return omit("TOO_COMPLEX");
  result.patch = patch;
  return result;
}

async function patchOrOmission(patcher: Patcher, job: PatchJob): Promise<string | null> {
  try {
    return await patcher(job);
  } catch (error) {
    if (!(error instanceof WorkerPoolError)) throw error;
    // A job that overran its deadline or took its worker down is a file too costly to diff.
    if (error.code === "DEADLINE" || error.code === "CRASHED") return null;
    if (error.code === "BUSY" || error.code === "CLOSED")
      throw new SandboxError("UNAVAILABLE", "Too many diffs are being computed right now; retry shortly");
    throw error;
  }
}
