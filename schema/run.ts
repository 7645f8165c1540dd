// Runs: exec returns at once; output streams by runOutput; abortRun stops one.

import * as runs from "../resolvers/run.ts";
import type { RunStreamEvent } from "../resolvers/runner.ts";
import { AGENT_EVENT_TYPES, agentEventType } from "./agent.ts";
import { builder } from "./builder.ts";
import { BranchRef, RunRef, SnapshotRef } from "./refs.ts";
import { UserRef } from "./user.ts";

const RunKind = builder.enumType("RunKind", { values: ["EXEC", "PROMPT"] as const });
const RunStatus = builder.enumType("RunStatus", {
  values: ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "ABORTED", "INTERRUPTED"] as const,
});

RunRef.implement({
  description: "One command (or agent turn) on a branch. When it ends, its workspace becomes a snapshot.",
  fields: (t) => ({
    id: t.exposeID("id"),
    kind: t.field({ type: RunKind, resolve: (r) => r.kind }),
    status: t.field({ type: RunStatus, resolve: (r) => r.status }),
    branch: t.field({
      type: BranchRef,
      nullable: true,
      description: "Null once the branch is deleted.",
      resolve: (r, _a, ctx) => ctx.loaders.branch.load(r.branchId),
    }),
    input: t.exposeString("input"),
    exitCode: t.exposeInt("exitCode", { nullable: true }),
    output: t.exposeString("output", {
      description: "What it printed so far (stored up to 1 MB; see outputTruncated).",
    }),
    outputTruncated: t.exposeBoolean("outputTruncated"),
    killedBy: t.exposeString("killedBy", {
      nullable: true,
      description:
        '"timeout", "output", "memory", "abort", "disk" (wrote more than it may: its writes were discarded) or "quota" (a storage quota was used up; see errorCode and error)',
    }),
    error: t.exposeString("error", { nullable: true }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    startedAt: t.expose("startedAt", { type: "DateTime", nullable: true }),
    finishedAt: t.expose("finishedAt", { type: "DateTime", nullable: true }),
    durationMs: t.exposeInt("durationMs", { nullable: true }),
    cpuMs: t.exposeInt("cpuMs", {
      nullable: true,
      description: "CPU time of the sandbox's processes, where measurable.",
    }),
    modelRequests: t.exposeInt("modelRequests", {
      nullable: true,
      description: "Agent runs: model calls through the gateway.",
    }),
    inputTokens: t.exposeInt("inputTokens", {
      nullable: true,
      description: "Agent runs: as the provider reported them.",
    }),
    outputTokens: t.exposeInt("outputTokens", { nullable: true }),
    costUsd: t.exposeFloat("costUsd", {
      nullable: true,
      description: "Agent runs: cost as opencode computes it.",
    }),
    snapshot: t.field({
      type: SnapshotRef,
      nullable: true,
      resolve: (r, _a, ctx) => (r.snapshotId ? ctx.loaders.snapshot.load(r.snapshotId) : null),
    }),
    user: t.field({
      type: UserRef,
      nullable: true,
      resolve: (r, _a, ctx) => (r.userId ? ctx.loaders.user.load(r.userId) : null),
    }),
  }),
});

const RunOutputChunk = builder
  .objectRef<Extract<RunStreamEvent, { type: "chunk" }>>("RunOutputChunk")
  .implement({
    fields: (t) => ({
      seq: t.exposeInt("seq", { description: "1, 2, 3... in order; each chunk arrives once." }),
      stream: t.exposeString("stream", { description: '"stdout" or "stderr"' }),
      text: t.exposeString("text"),
    }),
  });

const RunFinished = builder.objectRef<Extract<RunStreamEvent, { type: "end" }>>("RunFinished").implement({
  fields: (t) => ({
    seq: t.exposeInt("seq"),
    status: t.field({ type: RunStatus, resolve: (e) => e.status }),
    exitCode: t.exposeInt("exitCode", { nullable: true }),
    snapshot: t.field({
      type: SnapshotRef,
      nullable: true,
      resolve: (e, _a, ctx) => (e.snapshotId ? ctx.loaders.snapshot.load(e.snapshotId) : null),
    }),
  }),
});

const RunTrailTruncated = builder
  .objectRef<Extract<RunStreamEvent, { type: "truncated" }>>("RunTrailTruncated")
  .implement({
    description:
      "The run's stored record stops here: it reached its cap. What follows was streamed live but is not replayed (RunFinished always is).",
    fields: (t) => ({
      seq: t.exposeInt("seq"),
      storedEvents: t.exposeInt("storedEvents", { description: "Events stored before this one." }),
      storedBytes: t.exposeInt("storedBytes"),
      maxEvents: t.exposeInt("maxEvents"),
      maxBytes: t.exposeInt("maxBytes"),
    }),
  });

const RunEvent = builder.unionType("RunEvent", {
  description:
    "Output chunks (commands), agent events (prompts), then RunFinished. A finished run replays exactly what was streamed (up to RunTrailTruncated, if its record was cut).",
  types: [RunOutputChunk, RunFinished, RunTrailTruncated, ...AGENT_EVENT_TYPES],
  resolveType: (event) =>
    event.type === "chunk"
      ? RunOutputChunk
      : event.type === "end"
        ? RunFinished
        : event.type === "truncated"
          ? RunTrailTruncated
          : agentEventType(event),
});

builder.queryFields((t) => ({
  run: t.field({
    type: RunRef,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => runs.loadRun(ctx, String(args.id), "VIEWER"),
  }),
}));

builder.mutationFields((t) => ({
  exec: t.field({
    type: RunRef,
    description:
      "Runs a shell command in the branch's workspace. Returns at once (QUEUED); follow it with runOutput.",
    args: {
      branchId: t.arg.id({ required: true }),
      command: t.arg.string({ required: true }),
      timeoutMs: t.arg.int(),
    },
    resolve: (_r, args, ctx) => runs.exec(ctx, { ...args, branchId: String(args.branchId) }),
  }),
  abortRun: t.field({
    type: RunRef,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => runs.abortRun(ctx, String(args.id)),
  }),
}));

builder.subscriptionFields((t) => ({
  runOutput: t.field({
    type: RunEvent,
    description:
      "Everything the run streamed so far (stored with the run), then live events, then RunFinished; each once, in seq order.",
    args: { runId: t.arg.id({ required: true }) },
    subscribe: (_r, args, ctx) => runs.runOutput(ctx, String(args.runId)),
    resolve: (event) => event as never,
  }),
}));
