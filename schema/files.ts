// File listings and contents, shared by branches and snapshots.
import {
  FILE_PAGE,
  type FileContent,
  MAX_LISTED_FILES,
  MAX_READ_BYTES,
  MAX_READ_BYTES_PER_OPERATION,
} from "../resolvers/files.ts";
import type { FileEntry } from "../sandbox/provider.ts";
import { builder } from "./builder.ts";
import { connection } from "./connection.ts";

export const FileEntryRef = builder.objectRef<FileEntry>("FileEntry").implement({
  description: "A file, directory or symlink in a workspace or snapshot.",
  fields: (t) => ({
    path: t.exposeString("path", { description: "Its path from the root." }),
    type: t.exposeString("type", { description: '"file", "dir" or "symlink"' }),
    size: t.exposeFloat("size", { description: "Size in bytes (0 for directories)." }),
    mode: t.exposeInt("mode", { description: "Permission bits, e.g. 420 (0o644)." }),
    target: t.exposeString("target", { nullable: true, description: "Where a symlink points." }),
  }),
});

export const FileContentRef = builder.objectRef<FileContent>("FileContent").implement({
  description: "A file's content.",
  fields: (t) => ({
    path: t.exposeString("path", { description: "Its path from the root." }),
    content: t.exposeString("content", { description: "The content, in `encoding`." }),
    encoding: t.exposeString("encoding", { description: '"utf8" for text, "base64" for binary files' }),
    size: t.exposeFloat("size", { description: "Size in bytes." }),
  }),
});

/** A directory's entries a page at a time, by path (`Branch.fileEntries`, `Snapshot.fileEntries`). */
export const FileEntryConnection = connection("FileEntry", FileEntryRef, "a directory's entries");

export const PATH_DESCRIPTION = "A directory's path from the root (the root when omitted).";

export const FILES_DESCRIPTION = `Entries of a directory (the root by default), sorted by path: the first ${MAX_LISTED_FILES.toLocaleString("en")}. \`fileEntries\` pages through directories of any size.`;
export const FILE_ENTRIES_DESCRIPTION = `Entries of a directory (the root by default), sorted by path, a page at a time: \`first\` (default ${FILE_PAGE.default}, at most ${FILE_PAGE.max.toLocaleString("en")}) after the cursor \`after\`, or \`last\` before the cursor \`before\`.`;
const MIB = 1024 * 1024;
export const FILE_DESCRIPTION = `A file's content; null when there is none. Files over ${MAX_READ_BYTES / MIB} MiB, or past ${MAX_READ_BYTES_PER_OPERATION / MIB} MiB of files read by one operation, are PAYLOAD_TOO_LARGE (extensions: size, maxBytes), refused before they are read.`;
