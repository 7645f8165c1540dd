// File listings and contents, shared by branches and snapshots.
import type { FileContent } from "../resolvers/branch.ts";
import type { FileEntry } from "../sandbox/provider.ts";
import { builder } from "./builder.ts";

export const FileEntryRef = builder.objectRef<FileEntry>("FileEntry").implement({
  fields: (t) => ({
    path: t.exposeString("path"),
    type: t.exposeString("type", { description: '"file", "dir" or "symlink"' }),
    size: t.exposeFloat("size"),
    mode: t.exposeInt("mode", { description: "Permission bits, e.g. 420 (0o644)." }),
    target: t.exposeString("target", { nullable: true, description: "Where a symlink points." }),
  }),
});

export const FileContentRef = builder.objectRef<FileContent>("FileContent").implement({
  fields: (t) => ({
    path: t.exposeString("path"),
    content: t.exposeString("content"),
    encoding: t.exposeString("encoding", { description: '"utf8" for text, "base64" for binary files' }),
    size: t.exposeFloat("size"),
  }),
});
