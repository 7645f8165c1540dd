// A streaming reader for the tar streams of ConTree's inspect/archive endpoint (POSIX ustar with PAX
// extended headers, GNU long names and hard links tolerated): enough to turn an image's subtree into
// a manifest. Contents are hashed as they stream by and never held, so a large workspace costs its
// download, not its size in memory. Hand-written: ~100 lines against Node-stream-based npm readers.
// An archive that stops inside an entry or before its end-of-archive blocks is ContreeTruncatedError:
// a manifest built from part of an image would pass for the whole one.
import { createHash, type Hash } from "node:crypto";
import { ContreeTruncatedError } from "./errors.ts";

export interface TarEntry {
  /** As stored, "/"-separated, without a leading "./" or a trailing "/". */
  name: string;
  type: "file" | "dir" | "symlink" | "other";
  mode: number;
  size: number;
  linkName: string;
  /** SHA-256 of a file's content (hex); "" for other types. */
  sha256: string;
}

const BLOCK = 512;
const decoder = new TextDecoder();

function text(block: Uint8Array, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return decoder.decode(end < 0 ? field : field.subarray(0, end));
}

function octal(block: Uint8Array, offset: number, length: number): number {
  const value = text(block, offset, length).trim();
  return value ? Number.parseInt(value, 8) : 0;
}

/** PAX records: "<length> <key>=<value>\n" repeated. */
function paxRecords(data: Uint8Array): Record<string, string> {
  const records: Record<string, string> = {};
  const all = decoder.decode(data);
  let at = 0;
  while (at < all.length) {
    const space = all.indexOf(" ", at);
    if (space < 0) break;
    const length = Number.parseInt(all.slice(at, space), 10);
    if (!(length > 0)) break;
    const record = all.slice(space + 1, at + length - 1);
    const eq = record.indexOf("=");
    if (eq > 0) records[record.slice(0, eq)] = record.slice(eq + 1);
    at += length;
  }
  return records;
}

const clean = (name: string) => name.replace(/^\.\//, "").replace(/\/+$/, "");

const typeOf = (flag: string): TarEntry["type"] =>
  flag === "0" || flag === "\0" || flag === "7" || flag === "1"
    ? "file"
    : flag === "5"
      ? "dir"
      : flag === "2"
        ? "symlink"
        : "other";

const truncated = (detail: string) =>
  new ContreeTruncatedError("archive", `tar archive is truncated: ${detail}`);

/**
 * The entries of a tar stream, in order. Read failures of the stream propagate as they are; the
 * stream is released (its iterator returned, which cancels a response body) however the scan ends.
 */
export async function* scanTar(stream: AsyncIterable<Uint8Array>): AsyncGenerator<TarEntry> {
  const iterator = stream[Symbol.asyncIterator]();
  try {
    yield* scanEntries(iterator);
  } finally {
    // Not awaited: releasing the stream must never hold up, nor replace, the scan's own outcome.
    iterator.return?.()?.catch(() => {});
  }
}

async function* scanEntries(iterator: AsyncIterator<Uint8Array>): AsyncGenerator<TarEntry> {
  let buffered = new Uint8Array(0);
  /** At least `n` bytes buffered; false at the end of the stream. */
  const fill = async (n: number): Promise<boolean> => {
    while (buffered.length < n) {
      const { value, done } = await iterator.next();
      if (done) return false;
      const next = new Uint8Array(buffered.length + value.length);
      next.set(buffered);
      next.set(value, buffered.length);
      buffered = next;
    }
    return true;
  };
  /** Consumes `size` bytes plus padding, feeding them to `hash` (and returning them when `keep`). */
  const take = async (size: number, hash: Hash | null, keep: boolean): Promise<Uint8Array> => {
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    const kept: Uint8Array[] = [];
    let left = padded;
    let data = size;
    while (left > 0) {
      if (buffered.length === 0 && !(await fill(1))) throw truncated("it ends inside an entry");
      const piece = buffered.subarray(0, Math.min(left, buffered.length));
      const useful = piece.subarray(0, Math.min(data, piece.length));
      hash?.update(useful);
      if (keep) kept.push(useful.slice());
      data -= useful.length;
      left -= piece.length;
      buffered = buffered.subarray(piece.length);
    }
    return keep ? Buffer.concat(kept) : new Uint8Array(0);
  };

  let pax: Record<string, string> = {};
  let longName: string | null = null;
  let longLink: string | null = null;
  const hashes = new Map<string, { sha256: string; size: number }>();
  for (;;) {
    if (!(await fill(BLOCK))) {
      throw truncated(buffered.length > 0 ? "it ends inside a header" : "it has no end-of-archive blocks");
    }
    const header = buffered.slice(0, BLOCK);
    buffered = buffered.subarray(BLOCK);
    if (header.every((b) => b === 0)) return; // end of archive
    const flag = String.fromCharCode(header[156]!);
    const size = pax.size ? Number(pax.size) : octal(header, 124, 12);
    if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
      const data = await take(size, null, true);
      if (flag === "x") pax = { ...pax, ...paxRecords(data) };
      else if (flag === "L") longName = decoder.decode(data).replace(/\0+$/, "");
      else if (flag === "K") longLink = decoder.decode(data).replace(/\0+$/, "");
      continue; // "g": global PAX header, nothing we use
    }
    const prefix = text(header, 345, 155);
    const stored = text(header, 0, 100);
    const name = clean(pax.path ?? longName ?? (prefix ? `${prefix}/${stored}` : stored));
    const linkName = pax.linkpath ?? longLink ?? text(header, 157, 100);
    const type = typeOf(flag);
    let content = { sha256: "", size: 0 };
    if (flag === "1") {
      // A hard link is another name for a file stored earlier in the archive: same content.
      await take(size, null, false);
      content = hashes.get(clean(linkName)) ?? { sha256: createHash("sha256").digest("hex"), size: 0 };
    } else if (type === "file") {
      const hash = createHash("sha256");
      await take(size, hash, false);
      content = { sha256: hash.digest("hex"), size };
    } else await take(size, null, false);
    if (type === "file") hashes.set(name, content);
    yield {
      name,
      type,
      mode: octal(header, 100, 8) & 0o7777,
      size: content.size,
      linkName: flag === "1" ? "" : linkName,
      sha256: content.sha256,
    };
    pax = {};
    longName = null;
    longLink = null;
  }
}
