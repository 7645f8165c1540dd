// Branches: named heads with a live workspace; fork, rollback, checkpoint, writeFile, files.
import * as branches from "../resolvers/branch.ts";
import * as liveAgent from "../resolvers/live-agent.ts";
import * as runs from "../resolvers/run.ts";
import { builder } from "./builder.ts";
import {
  FILE_DESCRIPTION,
  FILE_ENTRIES_DESCRIPTION,
  FILES_DESCRIPTION,
  FileContentRef,
  FileEntryConnection,
  FileEntryRef,
} from "./files.ts";
import { BranchRef, SessionRef, SnapshotRef } from "./refs.ts";
import { RunConnection } from "./session.ts";

BranchRef.implement({
  description: "A named head in the snapshot tree, with a live workspace where runs happen.",
  fields: (t) => ({
    id: t.exposeID("id"),
    name: t.exposeString("name"),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    session: t.field({
      type: SessionRef,
      resolve: async (b, _a, ctx) => (await ctx.loaders.session.load(b.sessionId))!,
    }),
    head: t.field({
      type: SnapshotRef,
      resolve: async (b, _a, ctx) => (await ctx.loaders.snapshot.load(b.headSnapshotId))!,
    }),
    isMain: t.boolean({
      resolve: async (b, _a, ctx) => (await ctx.loaders.session.load(b.sessionId))?.mainBranchId === b.id,
    }),
    status: t.string({
      description: '"running" (a run is queued or running), "idle" (its workspace is live) or "stopped".',
      resolve: (b, _a, ctx) =>
        ctx.runner.isBusy(b.id) ? "running" : ctx.branchRuntime.sandboxOf(b.id) ? "idle" : "stopped",
    }),
    agentUrl: t.string({
      nullable: true,
      description:
        "The branch's live agent for opencode's own clients: `opencode attach <agentUrl> -p <API key, JWT or share-link token>` (any username) works in the real opencode TUI against this branch. Editors and owners may prompt (each turn is a PROMPT run ending in a snapshot); viewers may only read. Null where the session's provider runs the agent per turn (contree).",
      resolve: (b, _a, ctx) => liveAgent.agentUrlOf(ctx, b),
    }),
    runs: t.field({
      type: RunConnection,
      args: { first: t.arg.int(), after: t.arg.string() },
      resolve: (b, args, ctx) => runs.listRuns(ctx, { branchId: b.id }, args),
    }),
    files: t.field({
      type: [FileEntryRef],
      description: `${FILES_DESCRIPTION} Of the branch as it is now.`,
      args: { path: t.arg.string() },
      resolve: (b, args, ctx) => branches.branchFiles(ctx, b, args.path),
    }),
    fileEntries: t.field({
      type: FileEntryConnection,
      description: `${FILE_ENTRIES_DESCRIPTION} Of the branch as it is now.`,
      args: { path: t.arg.string(), first: t.arg.int(), after: t.arg.string() },
      resolve: (b, args, ctx) => branches.branchFileEntries(ctx, b, args),
    }),
    file: t.field({
      type: FileContentRef,
      nullable: true,
      description: FILE_DESCRIPTION,
      args: { path: t.arg.string({ required: true }) },
      resolve: (b, args, ctx) => branches.branchFile(ctx, b, args.path),
    }),
  }),
});

builder.queryFields((t) => ({
  branch: t.field({
    type: BranchRef,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => branches.loadBranch(ctx, String(args.id), "VIEWER"),
  }),
}));

builder.mutationFields((t) => ({
  fork: t.field({
    type: BranchRef,
    description: "A new branch whose head is the snapshot (any snapshot of the session).",
    args: { snapshotId: t.arg.id({ required: true }), name: t.arg.string() },
    resolve: (_r, args, ctx) => branches.fork(ctx, { snapshotId: String(args.snapshotId), name: args.name }),
  }),
  rollback: t.field({
    type: BranchRef,
    description:
      "Moves the branch head to an earlier (or any) snapshot of the session; its workspace follows.",
    args: { branchId: t.arg.id({ required: true }), snapshotId: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) =>
      branches.rollback(ctx, { branchId: String(args.branchId), snapshotId: String(args.snapshotId) }),
  }),
  checkpoint: t.field({
    type: SnapshotRef,
    description: "Snapshots the branch's workspace now (after queued runs) and moves its head there.",
    args: { branchId: t.arg.id({ required: true }), label: t.arg.string() },
    resolve: (_r, args, ctx) =>
      branches.checkpoint(ctx, { branchId: String(args.branchId), label: args.label }),
  }),
  writeFile: t.field({
    type: SnapshotRef,
    description: "Writes one file into the branch's workspace and records the result as a snapshot.",
    args: {
      branchId: t.arg.id({ required: true }),
      path: t.arg.string({ required: true }),
      content: t.arg.string({ required: true }),
    },
    resolve: (_r, args, ctx) => branches.writeFile(ctx, { ...args, branchId: String(args.branchId) }),
  }),
  deleteBranch: t.boolean({
    description: "Deletes a branch (not the main one). Its snapshots stay in the tree.",
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => branches.deleteBranch(ctx, String(args.id)),
  }),
}));
