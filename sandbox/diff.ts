// Differences between two snapshots' manifests: added/modified/deleted entries, with unified patches
// (jsdiff, a well-kept implementation of Myers' algorithm) for text files of reasonable size.
import { createTwoFilesPatch } from "diff";
import type { Manifest, ManifestEntry } from "./manifest.ts";
import type { DiffEntry } from "./provider.ts";

const MAX_PATCH_BYTES = 1024 * 1024;

const typeName = (e: ManifestEntry) =>
  (e.t === "f" ? "file" : e.t === "d" ? "dir" : "symlink") as DiffEntry["type"];

/** Text means valid UTF-8 without NUL bytes (what git also calls binary, roughly). */
export function isBinary(data: Uint8Array): boolean {
  if (data.subarray(0, 8000).includes(0)) return true;
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(data);
    return false;
  } catch {
    return true;
  }
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
): Promise<DiffEntry[]> {
  const out: DiffEntry[] = [];
  const paths = new Set([...from.keys(), ...to.keys()]);
  for (const path of [...paths].sort()) {
    const a = from.get(path);
    const b = to.get(path);
    if (a && b && a.t === b.t && a.m === b.m && a.h === b.h && a.l === b.l) continue;
    if (a && b && a.t !== b.t) {
      // A file became a directory (or similar): report the old one gone and the new one added.
      out.push(await describe(path, "deleted", a, undefined, read));
      out.push(await describe(path, "added", undefined, b, read));
      continue;
    }
    out.push(await describe(path, a && b ? "modified" : a ? "deleted" : "added", a, b, read));
  }
  return out;
}

async function contentOf(entry: ManifestEntry | undefined, read: (hash: string) => Promise<Uint8Array>) {
  if (!entry) return new Uint8Array();
  if (entry.t === "l") return new TextEncoder().encode(`${entry.l}\n`);
  if (entry.t === "f") return read(entry.h!);
  return new Uint8Array();
}

async function describe(
  path: string,
  change: DiffEntry["change"],
  a: ManifestEntry | undefined,
  b: ManifestEntry | undefined,
  read: (hash: string) => Promise<Uint8Array>,
): Promise<DiffEntry> {
  const entry = (b ?? a)!;
  const result: DiffEntry = { path, change, type: typeName(entry), binary: false };
  if (a) result.oldMode = a.m;
  if (b) result.newMode = b.m;
  if (entry.t === "d") return result;
  const tooBig = (a?.s ?? 0) > MAX_PATCH_BYTES || (b?.s ?? 0) > MAX_PATCH_BYTES;
  const before = tooBig ? new Uint8Array() : await contentOf(a, read);
  const after = tooBig ? new Uint8Array() : await contentOf(b, read);
  if (isBinary(before) || isBinary(after)) {
    result.binary = true;
    return result;
  }
  if (tooBig) return result;
  const decoder = new TextDecoder();
  if (a?.h === b?.h && a?.l === b?.l) return result; // a mode change only
  result.patch = createTwoFilesPatch(
    a ? `a/${path}` : "/dev/null",
    b ? `b/${path}` : "/dev/null",
    decoder.decode(before),
    decoder.decode(after),
    undefined,
    undefined,
    { context: 3 },
  );
  return result;
}
