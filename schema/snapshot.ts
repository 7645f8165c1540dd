// Snapshots: immutable nodes of the tree, their files, and diffs.

import * as snapshots from "../resolvers/snapshot.ts";
import type { DiffEntry } from "../sandbox/provider.ts";
import { builder } from "./builder.ts";
import { relayPage } from "./connection.ts";
import {
  FILE_DESCRIPTION,
  FILE_ENTRIES_DESCRIPTION,
  FILES_DESCRIPTION,
  FileContentRef,
  FileEntryConnection,
  FileEntryRef,
  PATH_DESCRIPTION,
} from "./files.ts";
import { RunRef, SnapshotRef } from "./refs.ts";

const SnapshotOrigin = builder.enumType("SnapshotOrigin", {
  description: "What made a snapshot.",
  values: {
    IMPORT: { description: "Creating the session (its files or repository): the root snapshot." },
    CHECKPOINT: { description: "checkpoint, on request." },
    RUN: { description: "A run ending (createdBy is the run)." },
    WRITE: { description: "writeFile." },
  } as const,
});

builder.node(SnapshotRef, {
  description: "An immutable copy of a workspace's files, a node in the session's tree.",
  id: { resolve: (s) => s.id },
  fields: (t) => ({
    parentId: t.exposeID("parentId", { nullable: true, description: "The parent's id; null for the root." }),
    parent: t.field({
      type: SnapshotRef,
      nullable: true,
      description: "The snapshot this one was made from; null for the root.",
      resolve: (s, _a, ctx) => (s.parentId ? ctx.loaders.snapshot.load(s.parentId) : null),
    }),
    children: t.field({
      type: [SnapshotRef],
      description: "The snapshots made from this one, oldest first.",
      resolve: (s, _a, ctx) => ctx.loaders.childrenOfSnapshot.load(s.id),
    }),
    origin: t.field({ type: SnapshotOrigin, description: "What made it.", resolve: (s) => s.origin }),
    label: t.exposeString("label", {
      nullable: true,
      description: "The label checkpoint was given, if any.",
    }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it was taken." }),
    createdBy: t.field({
      type: RunRef,
      nullable: true,
      description: "The run that produced it.",
      resolve: (s, _a, ctx) => (s.runId ? ctx.loaders.run.load(s.runId) : null),
    }),
    sizeBytes: t.exposeFloat("sizeBytes", { description: "Bytes of all its files." }),
    fileCount: t.exposeInt("fileCount", { description: "How many files it holds." }),
    files: t.field({
      type: [FileEntryRef],
      description: FILES_DESCRIPTION,
      args: { path: t.arg.string({ description: PATH_DESCRIPTION }) },
      resolve: (s, args, ctx) => snapshots.snapshotFiles(ctx, s, args.path),
    }),
    fileEntries: t.connection(
      {
        type: FileEntryRef,
        description: FILE_ENTRIES_DESCRIPTION,
        args: { path: t.arg.string({ description: PATH_DESCRIPTION }) },
        resolve: async (s, args, ctx) => relayPage(await snapshots.snapshotFileEntries(ctx, s, args)),
      },
      FileEntryConnection,
    ),
    file: t.field({
      type: FileContentRef,
      nullable: true,
      description: FILE_DESCRIPTION,
      args: { path: t.arg.string({ required: true, description: "The file's path from the root." }) },
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
  description: "One file that differs between two snapshots.",
  fields: (t) => ({
    path: t.exposeString("path", { description: "Its path from the root." }),
    change: t.exposeString("change", {
      description: '"added", "modified" or "deleted" (a rename is a delete and an add)',
    }),
    type: t.exposeString("type", { description: '"file", "dir" or "symlink"' }),
    binary: t.exposeBoolean("binary", { description: "Either side is not UTF-8 text." }),
    patch: t.exposeString("patch", { nullable: true, description: "Unified diff, for text files." }),
    patchOmitted: t.field({
      type: PatchOmitted,
      nullable: true,
      description: "Set when the content changed but `patch` is null, saying why.",
      resolve: (e) => e.patchOmitted ?? null,
    }),
    oldMode: t.exposeInt("oldMode", {
      nullable: true,
      description: "Permission bits before (null if added).",
    }),
    newMode: t.exposeInt("newMode", {
      nullable: true,
      description: "Permission bits after (null if deleted).",
    }),
  }),
});

const SnapshotDiffRef = builder.objectRef<snapshots.SnapshotDiff>("SnapshotDiff").implement({
  description: "What changed from one snapshot to another.",
  fields: (t) => ({
    from: t.field({ type: SnapshotRef, description: "The snapshot compared from.", resolve: (d) => d.from }),
    to: t.field({ type: SnapshotRef, description: "The snapshot compared to.", resolve: (d) => d.to }),
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
    description: "A snapshot of a session you are a member of (NOT_FOUND otherwise).",
    args: { id: t.arg.id({ required: true, description: "The snapshot's id (snp_…)." }) },
    resolve: (_r, args, ctx) => snapshots.snapshot(ctx, String(args.id)),
  }),
  diff: t.field({
    type: SnapshotDiffRef,
    description: "What changed from one snapshot to another of the same session.",
    args: {
      from: t.arg.id({ required: true, description: "The snapshot to compare from." }),
      to: t.arg.id({ required: true, description: "The snapshot to compare to." }),
    },
    resolve: (_r, args, ctx) => snapshots.diff(ctx, String(args.from), String(args.to)),
  }),
}));
