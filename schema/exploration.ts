// Explorations: best-of-N and tree search over branches, scored by a command.
import { eq } from "drizzle-orm";
import type { ExplorationBranchRow, ExplorationRow } from "../db/schema.ts";
import { explorations } from "../db/schema.ts";
import * as exploring from "../resolvers/exploration.ts";
import { builder } from "./builder.ts";
import { BranchRef, RunRef, SessionRef, SnapshotRef } from "./refs.ts";

const ExplorationStatus = builder.enumType("ExplorationStatus", {
  values: ["RUNNING", "SUCCEEDED", "FAILED"] as const,
});

const ExplorationBranchRef = builder.objectRef<ExplorationBranchRow>("ExplorationBranch").implement({
  description: "One candidate: a branch, the agent's turn on it, and the score of its score command.",
  fields: (t) => ({
    branch: t.field({
      type: BranchRef,
      nullable: true,
      resolve: (c, _a, ctx) => ctx.loaders.branch.load(c.branchId),
    }),
    level: t.exposeInt("level", { description: "1 for the first round; deeper rounds expand the best." }),
    prompt: t.exposeString("prompt"),
    run: t.field({
      type: RunRef,
      nullable: true,
      resolve: (c, _a, ctx) => (c.runId ? ctx.loaders.run.load(c.runId) : null),
    }),
    scoreRun: t.field({
      type: RunRef,
      nullable: true,
      resolve: (c, _a, ctx) => (c.scoreRunId ? ctx.loaders.run.load(c.scoreRunId) : null),
    }),
    passed: t.exposeBoolean("passed", {
      nullable: true,
      description: "The score command exited 0 (null while running).",
    }),
    score: t.exposeFloat("score", {
      nullable: true,
      description: "The number on the score command's last line, if any.",
    }),
  }),
});

const ExplorationRef = builder.objectRef<ExplorationRow>("Exploration").implement({
  fields: (t) => ({
    id: t.exposeID("id"),
    status: t.field({ type: ExplorationStatus, resolve: (e) => e.status }),
    session: t.field({
      type: SessionRef,
      resolve: async (e, _a, ctx) => (await ctx.loaders.session.load(e.sessionId))!,
    }),
    from: t.field({
      type: SnapshotRef,
      resolve: async (e, _a, ctx) => (await ctx.loaders.snapshot.load(e.fromSnapshotId))!,
    }),
    prompts: t.exposeStringList("prompts"),
    samples: t.exposeInt("samples"),
    depth: t.exposeInt("depth"),
    parallelism: t.exposeInt("parallelism"),
    scoreCommand: t.exposeString("scoreCommand"),
    candidates: t.field({
      type: [ExplorationBranchRef],
      resolve: (e, _a, ctx) => exploring.explorationBranchesOf(ctx, e.id),
    }),
    best: t.field({
      type: ExplorationBranchRef,
      nullable: true,
      resolve: async (e, _a, ctx) =>
        (await exploring.explorationBranchesOf(ctx, e.id)).find((c) => c.branchId === e.bestBranchId) ?? null,
    }),
    error: t.exposeString("error", { nullable: true }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    finishedAt: t.expose("finishedAt", { type: "DateTime", nullable: true }),
  }),
});

const ExplorationEventKind = builder.enumType("ExplorationEventKind", {
  values: ["BRANCH_STARTED", "BRANCH_SCORED", "LEVEL_FINISHED", "FINISHED"] as const,
});

const ExplorationEventRef = builder.objectRef<exploring.ExplorationEvent>("ExplorationEvent").implement({
  fields: (t) => ({
    kind: t.field({ type: ExplorationEventKind, resolve: (e) => e.kind }),
    branch: t.field({
      type: BranchRef,
      nullable: true,
      resolve: (e, _a, ctx) => (e.branchId ? ctx.loaders.branch.load(e.branchId) : null),
    }),
    level: t.int({ nullable: true, resolve: (e) => ("level" in e ? e.level : null) }),
    passed: t.boolean({ nullable: true, resolve: (e) => (e.kind === "BRANCH_SCORED" ? e.passed : null) }),
    score: t.float({ nullable: true, resolve: (e) => (e.kind === "BRANCH_SCORED" ? e.score : null) }),
  }),
});

const ExploreInput = builder.inputType("ExploreInput", {
  fields: (t) => ({
    snapshotId: t.id({ required: true }),
    prompts: t.stringList({
      required: true,
      description: "One or more strategies; each is tried `samples` times.",
    }),
    samples: t.int({ description: "Branches per prompt (default 1)." }),
    scoreCommand: t.string({
      required: true,
      description: "Run in each branch: exit 0 passes; a number on its last line is the score.",
    }),
    depth: t.int({
      description: "Rounds: each round after the first expands the best branch again (default 1).",
    }),
    parallelism: t.int({ description: "Candidates running at once (default 4)." }),
    promote: t.boolean({ description: "Make the best branch the session's main branch." }),
  }),
});

builder.queryFields((t) => ({
  exploration: t.field({
    type: ExplorationRef,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => exploring.loadExploration(ctx, String(args.id)),
  }),
}));

builder.mutationFields((t) => ({
  explore: t.field({
    type: ExplorationRef,
    description: "Best-of-N, then tree search: forks, agent turns, scores; returns at once (RUNNING).",
    args: { input: t.arg({ type: ExploreInput, required: true }) },
    resolve: (_r, args, ctx) =>
      exploring.explore(ctx, { ...args.input, snapshotId: String(args.input.snapshotId) }),
  }),
}));

builder.subscriptionFields((t) => ({
  exploration: t.field({
    type: ExplorationEventRef,
    description: "Progress: branches started and scored, rounds finished, then FINISHED.",
    args: { id: t.arg.id({ required: true }) },
    subscribe: (_r, args, ctx) => exploring.explorationEvents(ctx, String(args.id)),
    resolve: (e) => e,
  }),
}));

builder.objectField(SessionRef, "explorations", (t) =>
  t.field({
    type: [ExplorationRef],
    resolve: (s, _a, ctx) =>
      ctx.db
        .select()
        .from(explorations)
        .where(eq(explorations.sessionId, s.id))
        .orderBy(explorations.createdAt),
  }),
);
