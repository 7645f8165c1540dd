// Snapshots: immutable nodes of the tree, their files, and diffs.

import * as snapshots from "../resolvers/snapshot.ts";
import type { DiffEntry } from "../sandbox/provider.ts";
import { builder } from "./builder.ts";
import {
  FILE_DESCRIPTION,
  FILE_ENTRIES_DESCRIPTION,
  FILES_DESCRIPTION,
  FileContentRef,
  FileEntryConnection,
  FileEntryRef,
} from "./files.ts";
import { RunRef, SnapshotRef } from "./refs.ts";

const SnapshotOrigin = builder.enumType("SnapshotOrigin", {
  values: ["IMPORT", "CHECKPOINT", "RUN", "WRITE"] as const,
});

SnapshotRef.implement({
  description: "An immutable copy of a workspace's files, a node in the session's tree.",
  fields: (t) => ({
    id: t.exposeID("id"),
    parentId: t.exposeID("parentId", { nullable: true }),
    parent: t.field({
      type: SnapshotRef,
      nullable: true,
      resolve: (s, _a, ctx) => (s.parentId ? ctx.loaders.snapshot.load(s.parentId) : null),
    }),
    children: t.field({
      type: [SnapshotRef],
      resolve: (s, _a, ctx) => ctx.loaders.childrenOfSnapshot.load(s.id),
    }),
    origin: t.field({ type: SnapshotOrigin, resolve: (s) => s.origin }),
    label: t.exposeString("label", { nullable: true }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    createdBy: t.field({
      type: RunRef,
      nullable: true,
      description: "The run that produced it.",
      resolve: (s, _a, ctx) => (s.runId ? ctx.loaders.run.load(s.runId) : null),
    }),
    sizeBytes: t.exposeFloat("sizeBytes"),
    fileCount: t.exposeInt("fileCount"),
    files: t.field({
      type: [FileEntryRef],
      description: FILES_DESCRIPTION,
      args: { path: t.arg.string() },
      resolve: (s, args, ctx) => snapshots.snapshotFiles(ctx, s, args.path),
    }),
    fileEntries: t.field({
      type: FileEntryConnection,
      description: FILE_ENTRIES_DESCRIPTION,
      args: { path: t.arg.string(), first: t.arg.int(), after: t.arg.string() },
      resolve: (s, args, ctx) => snapshots.snapshotFileEntries(ctx, s, args),
    }),
    file: t.field({
      type: FileContentRef,
      nullable: true,
      description: FILE_DESCRIPTION,
      args: { path: t.arg.string({ required: true }) },
      resolve: (s, args, ctx) => snapshots.snapshotFile(ctx, s, args.path),
    }),
  }),
});

const PatchOmitted = builder.enumType("PatchOmitted", {
  description: "Why a changed file has no patch; its contents can still be read from either snapshot.",
  values: {
    BINARY: { description: "Not UTF-8 text." },
    TOO_LARGE: { description: "A side is larger than the per-file limit (1 MiB)." },
    TOO_COMPLEX: { description: "Too many changed lines to diff at a bounded cost." },
    BUDGET_EXCEEDED: {
      description: "This diff already patched as many files, bytes or seconds as one diff may.",
    },
  } as const,
});

const FileChangeRef = builder.objectRef<DiffEntry>("FileChange").implement({
  fields: (t) => ({
    path: t.exposeString("path"),
    change: t.exposeString("change", {
      description: '"added", "modified" or "deleted" (a rename is a delete and an add)',
    }),
    type: t.exposeString("type", { description: '"file", "dir" or "symlink"' }),
    binary: t.exposeBoolean("binary"),
    patch: t.exposeString("patch", { nullable: true, description: "Unified diff, for text files." }),
    patchOmitted: t.field({
      type: PatchOmitted,
      nullable: true,
      description: "Set when the content changed but `patch` is null, saying why.",
      resolve: (e) => e.patchOmitted ?? null,
    }),
    oldMode: t.exposeInt("oldMode", { nullable: true }),
    newMode: t.exposeInt("newMode", { nullable: true }),
  }),
});

const SnapshotDiffRef = builder.objectRef<snapshots.SnapshotDiff>("SnapshotDiff").implement({
  fields: (t) => ({
    from: t.field({ type: SnapshotRef, resolve: (d) => d.from }),
    to: t.field({ type: SnapshotRef, resolve: (d) => d.to }),
    files: t.field({
      type: [FileChangeRef],
      description: `The changes, by path: the first ${snapshots.MAX_DIFF_FILES.toLocaleString("en")}.`,
      resolve: (d) => d.files,
    }),
    totalFiles: t.exposeInt("totalFiles", {
      description: "How many changes there are in all (more than `files` lists when it is cut short).",
    }),
  }),
});

builder.queryFields((t) => ({
  snapshot: t.field({
    type: SnapshotRef,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => snapshots.snapshot(ctx, String(args.id)),
  }),
  diff: t.field({
    type: SnapshotDiffRef,
    description: "What changed from one snapshot to another of the same session.",
    args: { from: t.arg.id({ required: true }), to: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => snapshots.diff(ctx, String(args.from), String(args.to)),
  }),
}));
