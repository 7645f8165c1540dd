// Runs: exec returns at once; output streams by runOutput; abortRun stops one.

import * as runs from "../resolvers/run.ts";
import type { RunStreamEvent } from "../resolvers/runner.ts";
import { AGENT_EVENT_TYPES, agentEventType } from "./agent.ts";
import { builder } from "./builder.ts";
import { BranchRef, RunRef, SnapshotRef } from "./refs.ts";
import { UserRef } from "./user.ts";

const RunKind = builder.enumType("RunKind", {
  description: "What a run runs.",
  values: {
    EXEC: { description: "A shell command (exec)." },
    PROMPT: { description: "An agent turn (prompt, explore, or opencode attach)." },
  } as const,
});
const RunStatus = builder.enumType("RunStatus", {
  description: "Where a run is in its life.",
  values: {
    QUEUED: { description: "Waiting for the branch (runs on one branch queue) or a free slot." },
    RUNNING: { description: "Running now." },
    SUCCEEDED: { description: "Ended with exit code 0 (a turn: the agent finished)." },
    FAILED: { description: "Ended with another exit code, an error, or a limit (see killedBy)." },
    ABORTED: { description: "Stopped by abortRun." },
    INTERRUPTED: { description: "The server stopped while it ran." },
  } as const,
});

builder.node(RunRef, {
  description: "One command (or agent turn) on a branch. When it ends, its workspace becomes a snapshot.",
  id: { resolve: (r) => r.id },
  fields: (t) => ({
    kind: t.field({ type: RunKind, description: "A command or an agent turn.", resolve: (r) => r.kind }),
    status: t.field({ type: RunStatus, description: "Where it is in its life.", resolve: (r) => r.status }),
    branch: t.field({
      type: BranchRef,
      nullable: true,
      description: "Null once the branch is deleted.",
      resolve: (r, _a, ctx) => ctx.loaders.branch.load(r.branchId),
    }),
    input: t.exposeString("input", { description: "The command, or the prompt's text." }),
    exitCode: t.exposeInt("exitCode", {
      nullable: true,
      description: "The command's exit code, once it ended.",
    }),
    output: t.exposeString("output", {
      description: "What it printed so far (stored up to 1 MB; see outputTruncated).",
    }),
    outputTruncated: t.exposeBoolean("outputTruncated", {
      description: "It printed more than `output` keeps (runOutput streamed it all).",
    }),
    killedBy: t.exposeString("killedBy", {
      nullable: true,
      description:
        '"timeout", "output", "memory", "abort", "disk" (wrote more than it may: its writes were discarded) or "quota" (a storage quota was used up; see errorCode and error)',
    }),
    error: t.exposeString("error", {
      nullable: true,
      description: "Why it failed, when not by its exit code.",
    }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it was queued." }),
    startedAt: t.expose("startedAt", { type: "DateTime", nullable: true, description: "When it started." }),
    finishedAt: t.expose("finishedAt", { type: "DateTime", nullable: true, description: "When it ended." }),
    durationMs: t.exposeInt("durationMs", { nullable: true, description: "Wall time from start to end." }),
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
    outputTokens: t.exposeInt("outputTokens", {
      nullable: true,
      description: "Agent runs: as the provider reported them.",
    }),
    costUsd: t.exposeFloat("costUsd", {
      nullable: true,
      description: "Agent runs: cost as opencode computes it.",
    }),
    snapshot: t.field({
      type: SnapshotRef,
      nullable: true,
      description:
        "The snapshot its workspace became when it ended (null until then, or when none was taken).",
      resolve: (r, _a, ctx) => (r.snapshotId ? ctx.loaders.snapshot.load(r.snapshotId) : null),
    }),
    user: t.field({
      type: UserRef,
      nullable: true,
      description: "Who started it (null for runs the platform started, e.g. explorations' scores).",
      resolve: (r, _a, ctx) => (r.userId ? ctx.loaders.user.load(r.userId) : null),
    }),
  }),
});

const RunOutputChunk = builder
  .objectRef<Extract<RunStreamEvent, { type: "chunk" }>>("RunOutputChunk")
  .implement({
    description: "A piece of a command's output.",
    fields: (t) => ({
      seq: t.exposeInt("seq", { description: "1, 2, 3... in order; each chunk arrives once." }),
      stream: t.exposeString("stream", { description: '"stdout" or "stderr"' }),
      text: t.exposeString("text", { description: "The output (UTF-8, invalid bytes replaced)." }),
    }),
  });

const RunFinished = builder.objectRef<Extract<RunStreamEvent, { type: "end" }>>("RunFinished").implement({
  description: "The run ended: the last event of runOutput.",
  fields: (t) => ({
    seq: t.exposeInt("seq", { description: "Its place in the stream (after every other event)." }),
    status: t.field({ type: RunStatus, description: "How it ended.", resolve: (e) => e.status }),
    exitCode: t.exposeInt("exitCode", { nullable: true, description: "The command's exit code, if any." }),
    snapshot: t.field({
      type: SnapshotRef,
      nullable: true,
      description: "The snapshot its workspace became, if any.",
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
      seq: t.exposeInt("seq", { description: "Its place in the stream." }),
      storedEvents: t.exposeInt("storedEvents", { description: "Events stored before this one." }),
      storedBytes: t.exposeInt("storedBytes", { description: "Bytes of events stored before this one." }),
      maxEvents: t.exposeInt("maxEvents", { description: "Events a run may store (RUN_EVENTS_MAX_EVENTS)." }),
      maxBytes: t.exposeInt("maxBytes", {
        description: "Bytes of events a run may store (RUN_EVENTS_MAX_BYTES).",
      }),
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
    description: "A run in a session you are a member of (NOT_FOUND otherwise).",
    args: { id: t.arg.id({ required: true, description: "The run's id (run_…)." }) },
    resolve: (_r, args, ctx) => runs.loadRun(ctx, String(args.id), "VIEWER"),
  }),
}));

builder.mutationFields((t) => ({
  exec: t.field({
    type: RunRef,
    description:
      "Runs a shell command in the branch's workspace. Returns at once (QUEUED); follow it with runOutput.",
    args: {
      branchId: t.arg.id({ required: true, description: "The branch to run on." }),
      command: t.arg.string({ required: true, description: "A shell command (run with sh -c)." }),
      timeoutMs: t.arg.int({
        description: "Stop it after this long (at most the server's SANDBOX_TIMEOUT_MS).",
      }),
    },
    resolve: (_r, args, ctx) => runs.exec(ctx, { ...args, branchId: String(args.branchId) }),
  }),
  abortRun: t.field({
    type: RunRef,
    description: "Stops a queued or running run (ABORTED); returns it as it ended, or as it is after 1 s.",
    args: { id: t.arg.id({ required: true, description: "The run's id." }) },
    resolve: (_r, args, ctx) => runs.abortRun(ctx, String(args.id)),
  }),
}));

builder.subscriptionFields((t) => ({
  runOutput: t.field({
    type: RunEvent,
    description:
      "Everything the run streamed so far (stored with the run), then live events, then RunFinished; each once, in seq order.",
    args: { runId: t.arg.id({ required: true, description: "The run to follow." }) },
    subscribe: (_r, args, ctx) => runs.runOutput(ctx, String(args.runId)),
    resolve: (event) => event as never,
  }),
}));
