// Branches: named heads with a live workspace; fork, rollback, checkpoint, writeFile, files.
import * as branches from "../resolvers/branch.ts";
import * as liveAgent from "../resolvers/live-agent.ts";
import * as runs from "../resolvers/run.ts";
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
import { BranchRef, RunRef, SessionRef, SnapshotRef } from "./refs.ts";
import { RunConnection } from "./session.ts";

builder.node(BranchRef, {
  description: "A named head in the snapshot tree, with a live workspace where runs happen.",
  id: { resolve: (b) => b.id },
  fields: (t) => ({
    name: t.exposeString("name", { description: 'Its name, unique in the session (e.g. "main").' }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it was created." }),
    session: t.field({
      type: SessionRef,
      description: "The session it belongs to.",
      resolve: async (b, _a, ctx) => (await ctx.loaders.session.load(b.sessionId))!,
    }),
    head: t.field({
      type: SnapshotRef,
      description: "The snapshot its workspace was last recorded as; runs start from here.",
      resolve: async (b, _a, ctx) => (await ctx.loaders.snapshot.load(b.headSnapshotId))!,
    }),
    isMain: t.boolean({
      description: "Whether it is the session's main branch.",
      resolve: async (b, _a, ctx) => (await ctx.loaders.session.load(b.sessionId))?.mainBranchId === b.id,
    }),
    status: t.string({
      description: '"running" (a run is queued or running), "idle" (its workspace is live) or "stopped".',
      resolve: (b, _a, ctx) => branches.branchStatus(ctx, b),
    }),
    agentUrl: t.string({
      nullable: true,
      description:
        "The branch's live agent for opencode's own clients: `opencode attach <agentUrl> -p <API key, JWT or share-link token>` (any username) works in the real opencode TUI against this branch. Editors and owners may prompt (each turn is a PROMPT run ending in a snapshot); viewers may only read. Null where the session's provider runs the agent per turn (contree).",
      resolve: (b, _a, ctx) => liveAgent.agentUrlOf(ctx, b),
    }),
    runs: t.connection(
      {
        type: RunRef,
        description: "Runs on this branch, newest first; 20 a page by default.",
        resolve: async (b, args, ctx) => relayPage(await runs.listRuns(ctx, { branchId: b.id }, args)),
      },
      RunConnection,
    ),
    files: t.field({
      type: [FileEntryRef],
      description: `${FILES_DESCRIPTION} Of the branch as it is now.`,
      args: { path: t.arg.string({ description: PATH_DESCRIPTION }) },
      resolve: (b, args, ctx) => branches.branchFiles(ctx, b, args.path),
    }),
    fileEntries: t.connection(
      {
        type: FileEntryRef,
        description: `${FILE_ENTRIES_DESCRIPTION} Of the branch as it is now.`,
        args: { path: t.arg.string({ description: PATH_DESCRIPTION }) },
        resolve: async (b, args, ctx) => relayPage(await branches.branchFileEntries(ctx, b, args)),
      },
      FileEntryConnection,
    ),
    file: t.field({
      type: FileContentRef,
      nullable: true,
      description: FILE_DESCRIPTION,
      args: {
        path: t.arg.string({ required: true, description: "The file's path from the workspace root." }),
      },
      resolve: (b, args, ctx) => branches.branchFile(ctx, b, args.path),
    }),
  }),
});

builder.queryFields((t) => ({
  branch: t.field({
    type: BranchRef,
    description: "A branch of a session you are a member of (NOT_FOUND otherwise).",
    args: { id: t.arg.id({ required: true, description: "The branch's id (br_…)." }) },
    resolve: (_r, args, ctx) => branches.loadBranch(ctx, String(args.id), "VIEWER"),
  }),
}));

builder.mutationFields((t) => ({
  fork: t.field({
    type: BranchRef,
    description: "A new branch whose head is the snapshot (any snapshot of the session).",
    args: {
      snapshotId: t.arg.id({ required: true, description: "The snapshot to branch from." }),
      name: t.arg.string({
        description: "A name (1-64 letters, digits, '.', '-', '_', '/'); one is made up if omitted.",
      }),
    },
    resolve: (_r, args, ctx) => branches.fork(ctx, { snapshotId: String(args.snapshotId), name: args.name }),
  }),
  rollback: t.field({
    type: BranchRef,
    description:
      "Moves the branch head to an earlier (or any) snapshot of the session; its workspace follows.",
    args: {
      branchId: t.arg.id({ required: true, description: "The branch to move." }),
      snapshotId: t.arg.id({ required: true, description: "Its new head." }),
    },
    resolve: (_r, args, ctx) =>
      branches.rollback(ctx, { branchId: String(args.branchId), snapshotId: String(args.snapshotId) }),
  }),
  checkpoint: t.field({
    type: SnapshotRef,
    description: "Snapshots the branch's workspace now (after queued runs) and moves its head there.",
    args: {
      branchId: t.arg.id({ required: true, description: "The branch to snapshot." }),
      label: t.arg.string({ description: "A label for the snapshot." }),
    },
    resolve: (_r, args, ctx) =>
      branches.checkpoint(ctx, { branchId: String(args.branchId), label: args.label }),
  }),
  writeFile: t.field({
    type: SnapshotRef,
    description: "Writes one file into the branch's workspace and records the result as a snapshot.",
    args: {
      branchId: t.arg.id({ required: true, description: "The branch to write into." }),
      path: t.arg.string({ required: true, description: "The file's path from the workspace root." }),
      content: t.arg.string({ required: true, description: "Its new text (UTF-8)." }),
    },
    resolve: (_r, args, ctx) => branches.writeFile(ctx, { ...args, branchId: String(args.branchId) }),
  }),
  deleteBranch: t.boolean({
    description: "Deletes a branch (not the main one). Its snapshots stay in the tree.",
    args: { id: t.arg.id({ required: true, description: "The branch's id." }) },
    resolve: (_r, args, ctx) => branches.deleteBranch(ctx, String(args.id)),
  }),
}));
