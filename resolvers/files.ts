// Files of a branch or snapshot as clients see them: reads bounded before a byte is read, listings
// capped, and directories of any size paged by path. A sandbox's user controls its files (a sparse
// 900 MB file costs them nothing; so does a directory of 150,000 entries), so every size here is
// checked against what the server will hold, not what the client asked for.

import { limiter } from "../sandbox/concurrency.ts";
import { utf8Text } from "../sandbox/diff.ts";
import {
  type FileEntry,
  type FileSource,
  FileTooLargeError,
  type SandboxProvider,
} from "../sandbox/provider.ts";
import type { Context } from "./context.ts";
import { AppError, badInput } from "./errors.ts";
import type { Page, PageArgs } from "./pagination.ts";

/** Largest file one `file` field returns. */
export const MAX_READ_BYTES = 10 * 1024 * 1024;
/** File bytes one operation may read in all (30 aliases of `file` would otherwise hold 300 MB). */
export const MAX_READ_BYTES_PER_OPERATION = 32 * 1024 * 1024;
/** File reads in flight in this process at once; more wait their turn. */
const PARALLEL_READS = 4;
/** Entries a `files` listing returns at most (the first, by path); `fileEntries` pages through more. */
export const MAX_LISTED_FILES = 1000;
/** Page size of `fileEntries`: by default, and at most. */
export const FILE_PAGE = { default: 100, max: 1000 } as const;

export interface FileContent {
  path: string;
  content: string;
  encoding: "utf8" | "base64";
  size: number;
}

const tooLarge = (path: string, size: number, maxBytes: number) =>
  new AppError(
    "PAYLOAD_TOO_LARGE",
    `${path} is ${size} bytes; files over ${maxBytes} bytes cannot be read here`,
    {
      field: "path",
      size,
      maxBytes,
    },
  );

export function toFileContent(path: string, data: Uint8Array | null): FileContent | null {
  if (data === null) return null;
  if (data.byteLength > MAX_READ_BYTES) throw tooLarge(path, data.byteLength, MAX_READ_BYTES);
  const content = utf8Text(data);
  if (content !== null) return { path, content, encoding: "utf8", size: data.byteLength };
  return { path, content: Buffer.from(data).toString("base64"), encoding: "base64", size: data.byteLength };
}

const limited = limiter(PARALLEL_READS);

/** Bytes of files each operation has read so far. */
const readSoFar = new WeakMap<Context, number>();

/**
 * A file's content for a client; null when there is none. Over MAX_READ_BYTES it is refused
 * (PAYLOAD_TOO_LARGE with its size) from its size alone, before anything is read.
 */
export async function readFileContent(
  ctx: Context,
  provider: SandboxProvider,
  source: FileSource,
  path: string,
): Promise<FileContent | null> {
  const used = readSoFar.get(ctx) ?? 0;
  if (used >= MAX_READ_BYTES_PER_OPERATION) throw operationBudgetSpent(used);
  return limited(async () => {
    let data: Uint8Array | null;
    try {
      data = await provider.readFile(source, path, { maxBytes: MAX_READ_BYTES });
    } catch (error) {
      if (error instanceof FileTooLargeError) throw tooLarge(path, error.size, error.maxBytes);
      throw error;
    }
    if (data === null) return null;
    const total = (readSoFar.get(ctx) ?? 0) + data.byteLength;
    readSoFar.set(ctx, total);
    if (total > MAX_READ_BYTES_PER_OPERATION) throw operationBudgetSpent(total);
    return toFileContent(path, data);
  });
}

const operationBudgetSpent = (used: number) =>
  new AppError(
    "PAYLOAD_TOO_LARGE",
    `This operation read ${used} bytes of files; at most ${MAX_READ_BYTES_PER_OPERATION} per operation (read the rest in another request)`,
    { field: "path", maxBytes: MAX_READ_BYTES_PER_OPERATION },
  );

/** A directory's first MAX_LISTED_FILES entries, by path. */
export function listFirstFiles(
  provider: SandboxProvider,
  source: FileSource,
  dir: string,
): Promise<FileEntry[]> {
  return provider.listFiles(source, dir, { limit: MAX_LISTED_FILES });
}

/**
 * One page of a directory's entries, by path, either way (`first`/`after` forward, `last`/`before`
 * backward); cursors are the entries' paths. When a cursor bounds the other end, a one-entry listing
 * says whether anything lies beyond it, so hasNextPage and hasPreviousPage are exact.
 */
export async function pageOfFiles(
  provider: SandboxProvider,
  source: FileSource,
  dir: string,
  args: PageArgs,
): Promise<Page<FileEntry>> {
  const { size, backward } = filePageRequest(args);
  const after = decodePathCursor(args.after, "after");
  const before = decodePathCursor(args.before, "before");
  const between = { ...(after !== undefined && { after }), ...(before !== undefined && { before }) };
  // The cursor on the side the page does not read from: anything past it is the other way's "more".
  const otherEnd = backward ? before : after;
  const [entries, beyond] = await Promise.all([
    provider.listFiles(source, dir, { ...between, limit: size + 1, fromEnd: backward }),
    otherEnd === undefined
      ? Promise.resolve([])
      : provider.listFiles(
          source,
          dir,
          backward ? { after: otherEnd, limit: 1 } : { before: otherEnd, limit: 1, fromEnd: true },
        ),
  ]);
  const more = entries.length > size;
  // Listings come in path order; a backward page's extra entry is its first.
  const slice = backward ? entries.slice(Math.max(0, entries.length - size)) : entries.slice(0, size);
  const edges = slice.map((node) => ({ cursor: encodePathCursor(node.path), node }));
  return {
    edges,
    pageInfo: {
      hasNextPage: backward ? beyond.length > 0 : more,
      hasPreviousPage: backward ? more : beyond.length > 0,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges.at(-1)?.cursor ?? null,
    },
  };
}

/** `first` or `last` (not both), 1 to FILE_PAGE.max; backward when reading from the `before` end. */
function filePageRequest(args: PageArgs): { size: number; backward: boolean } {
  const hasFirst = args.first !== null && args.first !== undefined;
  const hasLast = args.last !== null && args.last !== undefined;
  if (hasFirst && hasLast) throw badInput("Pass first or last, not both", "last");
  const backward = hasLast || (!hasFirst && args.before != null && args.after == null);
  if (!hasFirst && !hasLast) return { size: FILE_PAGE.default, backward };
  const [value, arg] = hasFirst ? [args.first!, "first"] : [args.last!, "last"];
  if (!Number.isInteger(value) || value < 1 || value > FILE_PAGE.max)
    throw badInput(`${arg} must be 1 to ${FILE_PAGE.max}`, arg);
  return { size: value, backward };
}

const CURSOR_PREFIX = "path:";

export const encodePathCursor = (path: string) => Buffer.from(CURSOR_PREFIX + path).toString("base64url");

function decodePathCursor(cursor: string | null | undefined, arg: "after" | "before"): string | undefined {
  if (cursor === null || cursor === undefined) return undefined;
  const text = Buffer.from(cursor, "base64url").toString();
  // Round-tripped, so a cursor this API did not hand out is refused rather than read as something else.
  if (!text.startsWith(CURSOR_PREFIX) || encodePathCursor(text.slice(CURSOR_PREFIX.length)) !== cursor)
    throw badInput("Not a cursor from this API", arg);
  return text.slice(CURSOR_PREFIX.length);
}
