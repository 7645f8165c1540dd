// The files of a `{ kind: "files" }` sandbox base, checked and decoded once for every provider:
// strings are UTF-8, `{ content, encoding: "base64" }` is bytes, and the whole map is bounded. Every
// check a filesystem would make later (name lengths, a file where a directory must be, modes) is made
// here first, so a bad map is one BAD_BASE naming the entry, never an error half-way through writing.
import { checkWorkspacePath } from "./paths.ts";
import { type FileMap, SandboxError } from "./provider.ts";

const MAX_BASE_FILES = 10_000;
const MAX_BASE_BYTES = 64 * 1024 * 1024;
/** Permission bits. setuid/setgid (0o6000) are refused rather than silently dropped. */
const MAX_MODE = 0o7777;
const SET_ID_BITS = 0o6000;

export interface BaseFile {
  data: Uint8Array;
  /** Permission bits when the caller gave them. */
  mode?: number;
}

/** Path (as given) -> bytes and mode; TOO_LARGE past the bounds, BAD_BASE for a malformed entry. */
export function decodeBaseFiles(files: FileMap): Map<string, BaseFile> {
  const entries = Object.entries(files);
  if (entries.length > MAX_BASE_FILES) throw new SandboxError("TOO_LARGE", `At most ${MAX_BASE_FILES} files`);
  const out = new Map<string, BaseFile>();
  const byCleanPath = new Map<string, string>();
  let total = 0;
  for (const [path, input] of entries) {
    const clean = cleanEntryPath(path);
    const twin = byCleanPath.get(clean);
    if (twin !== undefined) throw bad(path, `names the same file as "${twin}"`);
    byCleanPath.set(clean, path);
    const spec = typeof input === "string" ? { content: input } : input;
    if (typeof spec !== "object" || spec === null || Array.isArray(spec) || typeof spec.content !== "string")
      throw bad(path, "content must be a string");
    const encoding = (spec as { encoding?: unknown }).encoding;
    if (encoding !== undefined && encoding !== null && encoding !== "utf8" && encoding !== "base64")
      throw bad(path, 'encoding must be "utf8" or "base64"');
    const mode = checkMode(path, (spec as { mode?: unknown }).mode);
    const data = encoding === "base64" ? decodeBase64(path, spec.content) : Buffer.from(spec.content, "utf8");
    total += data.byteLength;
    if (total > MAX_BASE_BYTES) throw new SandboxError("TOO_LARGE", `Files exceed ${MAX_BASE_BYTES} bytes`);
    out.set(path, mode === undefined ? { data } : { data, mode });
  }
  refuseFilesUnderFiles(byCleanPath);
  return out;
}

const bad = (path: string, why: string) =>
  new SandboxError("BAD_BASE", `files["${path.length > 64 ? `${path.slice(0, 64)}…` : path}"]: ${why}`);

function cleanEntryPath(path: string): string {
  try {
    return checkWorkspacePath(path);
  } catch (error) {
    if (error instanceof SandboxError) throw bad(path, error.message);
    throw error;
  }
}

/**
 * Standard or URL-safe base64, padded or not, line breaks and spaces allowed (as `base64` wraps it).
 * Buffer.from would skip any other character silently and store whatever the rest decodes to.
 */
const BASE64 = /^(?:[A-Za-z0-9+/]*|[A-Za-z0-9_-]*)={0,2}$/;

function decodeBase64(path: string, content: string): Buffer {
  const text = content.replace(/[\t\n\r ]+/g, "");
  const data = text.replace(/=+$/, "");
  // A lone last character carries 6 bits, not a byte; padding may only round a group up to 4.
  if (!BASE64.test(text) || data.length % 4 === 1 || (text.length !== data.length && text.length % 4 !== 0))
    throw bad(path, 'content is not valid base64 (encoding: "base64")');
  return Buffer.from(data, "base64");
}

function checkMode(path: string, mode: unknown): number | undefined {
  if (mode === undefined || mode === null) return undefined;
  if (typeof mode !== "number" || !Number.isInteger(mode) || mode < 0 || mode > MAX_MODE)
    throw bad(path, "mode must be a whole number of permission bits, 0 to 0o7777 (e.g. 420 for 0o644)");
  if (mode & SET_ID_BITS) throw bad(path, "setuid and setgid bits (0o6000) are not allowed");
  return mode;
}

/** {"a": …, "a/b": …} would need "a" to be a file and a directory at once. */
function refuseFilesUnderFiles(byCleanPath: Map<string, string>): void {
  for (const [clean, path] of byCleanPath) {
    for (let i = clean.indexOf("/"); i >= 0; i = clean.indexOf("/", i + 1)) {
      const parent = byCleanPath.get(clean.slice(0, i));
      if (parent !== undefined) throw bad(path, `"${parent}" is a file, so it cannot contain other files`);
    }
  }
}
