// Explorations: best-of-N and tree search over branches, scored by a command.
import { eq } from "drizzle-orm";
import type { ExplorationBranchRow, ExplorationRow } from "../db/schema.ts";
import { explorations } from "../db/schema.ts";
import * as exploring from "../resolvers/exploration.ts";
import { builder } from "./builder.ts";
import { BranchRef, RunRef, SessionRef, SnapshotRef } from "./refs.ts";

const ExplorationStatus = builder.enumType("ExplorationStatus", {
  description: "Where an exploration is.",
  values: {
    RUNNING: { description: "Candidates are being tried or scored." },
    SUCCEEDED: { description: "Every round ran; best names the winner." },
    FAILED: { description: "It stopped early (see error); best is the best scored so far." },
  } as const,
});

const ExplorationBranchRef = builder.objectRef<ExplorationBranchRow>("ExplorationBranch").implement({
  description: "One candidate: a branch, the agent's turn on it, and the score of its score command.",
  fields: (t) => ({
    branch: t.field({
      type: BranchRef,
      nullable: true,
      description: "The candidate's branch (null once deleted).",
      resolve: (c, _a, ctx) => ctx.loaders.branch.load(c.branchId),
    }),
    level: t.exposeInt("level", { description: "1 for the first round; deeper rounds expand the best." }),
    prompt: t.exposeString("prompt", { description: "The strategy (one of the prompts) tried here." }),
    run: t.field({
      type: RunRef,
      nullable: true,
      description: "The agent's turn on the branch (null until it starts).",
      resolve: (c, _a, ctx) => (c.runId ? ctx.loaders.run.load(c.runId) : null),
    }),
    scoreRun: t.field({
      type: RunRef,
      nullable: true,
      description: "The score command's run (null until it starts).",
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

const ExplorationRef = builder.node(builder.objectRef<ExplorationRow>("Exploration"), {
  description:
    "A best-of-N and tree search over branches (explore): candidates tried by the agent, then scored.",
  id: { resolve: (e) => e.id },
  fields: (t) => ({
    status: t.field({ type: ExplorationStatus, description: "Where it is.", resolve: (e) => e.status }),
    session: t.field({
      type: SessionRef,
      description: "The session it explores in.",
      resolve: async (e, _a, ctx) => (await ctx.loaders.session.load(e.sessionId))!,
    }),
    from: t.field({
      type: SnapshotRef,
      description: "The snapshot every first-round candidate starts from.",
      resolve: async (e, _a, ctx) => (await ctx.loaders.snapshot.load(e.fromSnapshotId))!,
    }),
    prompts: t.exposeStringList("prompts", { description: "The strategies tried." }),
    samples: t.exposeInt("samples", { description: "Branches per prompt." }),
    depth: t.exposeInt("depth", { description: "Rounds." }),
    parallelism: t.exposeInt("parallelism", { description: "Candidates running at once." }),
    scoreCommand: t.exposeString("scoreCommand", { description: "The command that scores each candidate." }),
    candidates: t.field({
      type: [ExplorationBranchRef],
      description: "Every candidate so far, oldest first.",
      resolve: (e, _a, ctx) => exploring.explorationBranchesOf(ctx, e.id),
    }),
    best: t.field({
      type: ExplorationBranchRef,
      nullable: true,
      description: "The best scored candidate (passing first, then by score), once a round has ended.",
      resolve: async (e, _a, ctx) =>
        (await exploring.explorationBranchesOf(ctx, e.id)).find((c) => c.branchId === e.bestBranchId) ?? null,
    }),
    error: t.exposeString("error", { nullable: true, description: "Why it FAILED." }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it started." }),
    finishedAt: t.expose("finishedAt", { type: "DateTime", nullable: true, description: "When it ended." }),
  }),
});

const ExplorationEventKind = builder.enumType("ExplorationEventKind", {
  description: "A step of an exploration.",
  values: {
    BRANCH_STARTED: { description: "A candidate branch was forked and its turn started (branch, level)." },
    BRANCH_SCORED: { description: "A candidate was scored (branch, level, passed, score)." },
    LEVEL_FINISHED: { description: "A round ended (level; branch: its best, if any)." },
    FINISHED: { description: "The exploration ended (branch: the best, if any); the stream ends." },
  } as const,
});

const ExplorationEventRef = builder.objectRef<exploring.ExplorationEvent>("ExplorationEvent").implement({
  description: "Progress of an exploration.",
  fields: (t) => ({
    kind: t.field({ type: ExplorationEventKind, description: "Which step.", resolve: (e) => e.kind }),
    branch: t.field({
      type: BranchRef,
      nullable: true,
      description: "The candidate (or best) branch concerned, if any.",
      resolve: (e, _a, ctx) => (e.branchId ? ctx.loaders.branch.load(e.branchId) : null),
    }),
    level: t.int({
      nullable: true,
      description: "The round (1 first), if the step has one.",
      resolve: (e) => ("level" in e ? e.level : null),
    }),
    passed: t.boolean({
      nullable: true,
      description: "BRANCH_SCORED: the score command exited 0.",
      resolve: (e) => (e.kind === "BRANCH_SCORED" ? e.passed : null),
    }),
    score: t.float({
      nullable: true,
      description: "BRANCH_SCORED: the number the score command printed last, if any.",
      resolve: (e) => (e.kind === "BRANCH_SCORED" ? e.score : null),
    }),
  }),
});

const ExploreInput = builder.inputType("ExploreInput", {
  description: "What to explore: from where, which strategies, how many, how scored.",
  fields: (t) => ({
    snapshotId: t.id({ required: true, description: "The snapshot every first-round candidate forks from." }),
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
    description: "An exploration in a session you are a member of (NOT_FOUND otherwise).",
    args: { id: t.arg.id({ required: true, description: "The exploration's id (exp_…)." }) },
    resolve: (_r, args, ctx) => exploring.loadExploration(ctx, String(args.id)),
  }),
}));

builder.mutationFields((t) => ({
  explore: t.field({
    type: ExplorationRef,
    description: "Best-of-N, then tree search: forks, agent turns, scores; returns at once (RUNNING).",
    args: { input: t.arg({ type: ExploreInput, required: true, description: "What to explore." }) },
    resolve: (_r, args, ctx) =>
      exploring.explore(ctx, { ...args.input, snapshotId: String(args.input.snapshotId) }),
  }),
}));

builder.subscriptionFields((t) => ({
  exploration: t.field({
    type: ExplorationEventRef,
    description: "Progress: branches started and scored, rounds finished, then FINISHED.",
    args: { id: t.arg.id({ required: true, description: "The exploration's id." }) },
    subscribe: (_r, args, ctx) => exploring.explorationEvents(ctx, String(args.id)),
    resolve: (e) => e,
  }),
}));

builder.objectField(SessionRef, "explorations", (t) =>
  t.field({
    type: [ExplorationRef],
    description: "Explorations run in this session, oldest first.",
    resolve: (s, _a, ctx) =>
      ctx.db
        .select()
        .from(explorations)
        .where(eq(explorations.sessionId, s.id))
        .orderBy(explorations.createdAt),
  }),
);
