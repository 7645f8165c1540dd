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
import type { Page } from "./pagination.ts";

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

/** One page of a directory's entries, by path; cursors are the entries' paths. */
export async function pageOfFiles(
  provider: SandboxProvider,
  source: FileSource,
  dir: string,
  args: { first?: number | null; after?: string | null },
): Promise<Page<FileEntry>> {
  const size = filePageSize(args.first);
  const after = args.after === null || args.after === undefined ? undefined : decodePathCursor(args.after);
  const entries = await provider.listFiles(source, dir, { after, limit: size + 1 });
  const slice = entries.slice(0, size);
  return {
    edges: slice.map((node) => ({ cursor: encodePathCursor(node.path), node })),
    pageInfo: {
      hasNextPage: entries.length > size,
      endCursor: slice.length > 0 ? encodePathCursor(slice.at(-1)!.path) : null,
    },
  };
}

function filePageSize(first: number | null | undefined): number {
  if (first === null || first === undefined) return FILE_PAGE.default;
  if (!Number.isInteger(first) || first < 1 || first > FILE_PAGE.max)
    throw badInput(`first must be 1 to ${FILE_PAGE.max}`, "first");
  return first;
}

const CURSOR_PREFIX = "path:";

export const encodePathCursor = (path: string) => Buffer.from(CURSOR_PREFIX + path).toString("base64url");

function decodePathCursor(cursor: string): string {
  const text = Buffer.from(cursor, "base64url").toString();
  // Round-tripped, so a cursor this API did not hand out is refused rather than read as something else.
  if (!text.startsWith(CURSOR_PREFIX) || encodePathCursor(text.slice(CURSOR_PREFIX.length)) !== cursor)
    throw badInput("Not a cursor from this API", "after");
  return text.slice(CURSOR_PREFIX.length);
}
