// Exploration: from one snapshot, fork a branch per prompt and sample, run the agent on each (in
// parallel up to `parallelism`), score each with a command in its own sandbox (exit 0 = pass; a
// number on the last output line = score), keep the best, and with depth > 1 expand the best again
// (a tree search under a budget). Every branch it made stays in the tree with its score.
//
// Its runs (each candidate's agent turn and its score run) count in the user's run quotas like any
// `exec` or `prompt` (run-quota.ts): each takes a slot of the user's runs at once while it lives, its
// seconds count in the day's run-seconds, and it lasts at most what is left of the day. `explore`
// takes the first run's slot itself, so an exploration the quotas cannot start is refused with
// QUOTA_EXCEEDED before anything is recorded or forked. Past that:
// - all slots taken (parallelism above the limit, or the user's other runs): the candidate waits for a
//   slot before it forks (queued, not failed), as long as a slot must come free (the longest run plus a
//   lease); a score run waits the same way after its turn;
// - the day's run-seconds used up, a slot never coming free, or a shutdown: the exploration stops
//   cleanly. No new candidate starts, the running ones finish and are scored (a turn whose score run
//   was refused stays unscored), and it ends FAILED with `error` saying why; `best` is the best scored
//   so far, and it is not promoted (a partial search is no reason to change the main branch).
import { and, eq } from "drizzle-orm";
import type { Upstream } from "../agent/gateway.ts";
import { payloadsOf, topics } from "../bus/bus.ts";
import { newId } from "../db/ids.ts";
import {
  branches,
  type ExplorationBranchRow,
  type ExplorationRow,
  explorationBranches,
  explorations,
  members,
  type SnapshotRow,
  sessions,
  snapshots,
} from "../db/schema.ts";
import { loadInSession } from "./access.ts";
import { loadSnapshot } from "./branch.ts";
import type { Context } from "./context.ts";
import { AppError, badInput } from "./errors.ts";
import { publishSessionEvent } from "./events.ts";
import { modelFor } from "./model-keys.ts";
import { type RunTicket, startCounted } from "./run-quota.ts";

export interface ExploreInput {
  snapshotId: string;
  prompts: string[];
  samples?: number | null;
  scoreCommand: string;
  depth?: number | null;
  parallelism?: number | null;
  promote?: boolean | null;
}

export type ExplorationEvent =
  | { kind: "BRANCH_STARTED"; explorationId: string; branchId: string; level: number }
  | {
      kind: "BRANCH_SCORED";
      explorationId: string;
      branchId: string;
      level: number;
      passed: boolean;
      score: number | null;
    }
  | { kind: "LEVEL_FINISHED"; explorationId: string; level: number; branchId: string | null }
  | { kind: "FINISHED"; explorationId: string; branchId: string | null };

/** At most this many agent turns per exploration (prompts x samples x depth). */
const MAX_TURNS = 32;

/** A score from a score run: exit 0 passes; a number alone on the last output line is the score. */
export function scoreOf(exitCode: number | null, output: string): { passed: boolean; score: number | null } {
  const last = output.trimEnd().split("\n").at(-1)?.trim() ?? "";
  const number = /^-?\d+(\.\d+)?$/.test(last) ? Number(last) : null;
  return { passed: exitCode === 0, score: number };
}

/** Better first: passing, then higher score, then earlier. */
const rank = (a: ExplorationBranchRow, b: ExplorationBranchRow) =>
  Number(b.passed) - Number(a.passed) ||
  (b.score ?? Number.NEGATIVE_INFINITY) - (a.score ?? Number.NEGATIVE_INFINITY);

export async function explore(ctx: Context, input: ExploreInput): Promise<ExplorationRow> {
  // Promoting the best branch changes the session's main branch: that is promote's power, owners only.
  const from = await loadSnapshot(ctx, input.snapshotId, input.promote ? "OWNER" : "EDITOR");
  const unavailable = ctx.agentUnavailable((await ctx.loaders.session.load(from.sessionId))!.provider);
  if (unavailable) throw new AppError("UNAVAILABLE", unavailable);
  const prompts = input.prompts.map((p) => p.trim()).filter(Boolean);
  const samples = input.samples ?? 1;
  const depth = input.depth ?? 1;
  const parallelism = input.parallelism ?? 4;
  if (prompts.length === 0) throw badInput("Give at least one prompt", "prompts");
  if (!Number.isInteger(samples) || samples < 1 || samples > 8)
    throw badInput("samples must be 1 to 8", "samples");
  if (!Number.isInteger(depth) || depth < 1 || depth > 4) throw badInput("depth must be 1 to 4", "depth");
  if (!Number.isInteger(parallelism) || parallelism < 1 || parallelism > 16)
    throw badInput("parallelism must be 1 to 16", "parallelism");
  if (prompts.length * samples * depth > MAX_TURNS) {
    throw badInput(`prompts x samples x depth must be at most ${MAX_TURNS} agent turns`, "samples");
  }
  if (!input.scoreCommand.trim()) throw badInput("scoreCommand is empty", "scoreCommand");
  await ctx.quota.assertCanBranch(from.sessionId, prompts.length * samples * depth);
  const upstream = await modelFor(ctx, ctx.viewer!.userId);
  // The first run's slot, taken now: QUOTA_EXCEEDED (runs at once, run-seconds) before anything is made.
  const first = await ctx.runQuota.begin(ctx.viewer!.userId, null);

  const [row] = await ctx.db
    .insert(explorations)
    .values({
      id: newId("exp"),
      sessionId: from.sessionId,
      userId: ctx.viewer!.userId,
      fromSnapshotId: from.id,
      status: "RUNNING",
      prompts,
      samples,
      scoreCommand: input.scoreCommand,
      depth,
      parallelism,
      promote: input.promote ?? false,
      createdAt: new Date(),
    })
    .returning()
    .catch((error: unknown) => {
      first.cancel();
      throw error;
    });
  const tickets = runTickets(ctx, row!, first);
  void search(ctx, row!, from, upstream, tickets).catch(async (error) => {
    tickets.stop(null);
    ctx.log.error("exploration failed", {
      explorationId: row!.id,
      error: String(error),
      // A database error's reason is its cause (drizzle's message is only the query).
      cause: String((error as Error)?.cause ?? ""),
      stack: (error as Error)?.stack,
    });
    await ctx.db
      .update(explorations)
      .set({
        status: "FAILED",
        error: "The exploration stopped on an unexpected error",
        finishedAt: new Date(),
      })
      .where(eq(explorations.id, row!.id));
    await publish(ctx, { kind: "FINISHED", explorationId: row!.id, branchId: null });
  });
  return row!;
}

const publish = (ctx: Context, event: ExplorationEvent) =>
  ctx.bus.publish(topics.exploration(event.explorationId), event);

/** The run quotas as an exploration meets them: tickets for its runs, and why it stopped early. */
interface RunTickets {
  /** A ticket for the next run (the one `explore` took first, then queued ones); null once stopped. */
  next(): Promise<RunTicket | null>;
  /** Stops the exploration: no further ticket (the reason, if any, becomes its error). */
  stop(reason: string | null): void;
  /** Why it stopped early, or null. */
  readonly stopped: string | null;
}

function runTickets(ctx: Context, exploration: ExplorationRow, first: RunTicket): RunTickets {
  let pending: RunTicket | null = first;
  let stopped: string | null = null;
  let halted = false;
  const stop = (reason: string | null) => {
    if (!halted) stopped = reason;
    halted = true;
    pending?.cancel();
    pending = null;
  };
  return {
    async next() {
      if (halted) return null;
      if (pending) {
        const ticket = pending;
        pending = null;
        return ticket;
      }
      try {
        const ticket = await ctx.runQuota.beginWhenFree(exploration.userId, null);
        // Stopped while it waited (another worker was refused): the slot goes back.
        if (!halted) return ticket;
        ticket.cancel();
        return null;
      } catch (error) {
        if (!(error instanceof AppError))
          ctx.log.warn("run quotas could not be checked; exploration stopped", {
            explorationId: exploration.id,
            error: String(error),
          });
        stop(error instanceof AppError ? error.message : "Run quotas could not be checked");
        return null;
      }
    },
    stop,
    get stopped() {
      return stopped;
    },
  };
}

async function search(
  ctx: Context,
  exploration: ExplorationRow,
  start: SnapshotRow,
  upstream: Upstream,
  tickets: RunTickets,
): Promise<void> {
  let from = start;
  let best: ExplorationBranchRow | null = null;
  for (let level = 1; level <= exploration.depth && !tickets.stopped; level++) {
    const tasks = exploration.prompts.flatMap((prompt) =>
      Array.from({ length: exploration.samples }, () => prompt),
    );
    const results: ExplorationBranchRow[] = [];
    let next = 0;
    const worker = async () => {
      while (next < tasks.length) {
        const index = next++;
        const ticket = await tickets.next();
        if (!ticket) return;
        const task = { from, level, index, prompt: tasks[index]! };
        const scored = await candidate(ctx, exploration, task, upstream, { turn: ticket, tickets });
        if (scored) results.push(scored);
      }
    };
    await Promise.all(Array.from({ length: Math.min(exploration.parallelism, tasks.length) }, worker));
    const levelBest = [...results].sort(rank)[0] ?? null;
    await publish(ctx, {
      kind: "LEVEL_FINISHED",
      explorationId: exploration.id,
      level,
      branchId: levelBest?.branchId ?? null,
    });
    if (!levelBest) break;
    if (!best || rank(levelBest, best) <= 0) best = levelBest;
    if (tickets.stopped) break;
    // The next level starts from the best candidate's head (after its score run).
    const [head] = await ctx.db
      .select({ snapshot: snapshots })
      .from(branches)
      .innerJoin(snapshots, eq(snapshots.id, branches.headSnapshotId))
      .where(eq(branches.id, levelBest.branchId));
    from = head!.snapshot;
  }
  // No ticket is handed out past here (the first one goes back if no run ever took it).
  tickets.stop(null);
  const stopped = tickets.stopped;
  if (stopped) {
    await ctx.db
      .update(explorations)
      .set({
        status: "FAILED",
        error: `Stopped before every candidate ran: ${stopped}`,
        bestBranchId: best?.branchId ?? null,
        finishedAt: new Date(),
      })
      .where(eq(explorations.id, exploration.id));
    await publish(ctx, { kind: "FINISHED", explorationId: exploration.id, branchId: best?.branchId ?? null });
    return;
  }
  // Checked again at the end: the explorer may have lost ownership while it ran.
  if (best && exploration.promote && (await stillOwner(ctx, exploration))) {
    await ctx.db
      .update(sessions)
      .set({ mainBranchId: best.branchId })
      .where(eq(sessions.id, exploration.sessionId));
    await publishSessionEvent(ctx, {
      kind: "MAIN_CHANGED",
      sessionId: exploration.sessionId,
      branchId: best.branchId,
    });
  }
  await ctx.db
    .update(explorations)
    .set({ status: "SUCCEEDED", bestBranchId: best?.branchId ?? null, finishedAt: new Date() })
    .where(eq(explorations.id, exploration.id));
  await publish(ctx, { kind: "FINISHED", explorationId: exploration.id, branchId: best?.branchId ?? null });
}

async function stillOwner(ctx: Context, exploration: ExplorationRow): Promise<boolean> {
  const [member] = await ctx.db
    .select({ role: members.role })
    .from(members)
    .where(and(eq(members.sessionId, exploration.sessionId), eq(members.userId, exploration.userId)));
  if (member?.role === "OWNER") return true;
  ctx.log.warn("exploration not promoted: its user is no longer an owner of the session", {
    explorationId: exploration.id,
  });
  return false;
}

/** Where a candidate starts: the snapshot, its round, its place in the round, its prompt. */
interface Task {
  from: SnapshotRow;
  level: number;
  index: number;
  prompt: string;
}

/**
 * One candidate: a fork, an agent turn on it (on the `turn` ticket, taken before the fork), then the
 * score command (on a ticket of its own); recorded with its score. Null when the score run got no
 * ticket (the exploration stopped): the candidate stays, unscored.
 */
async function candidate(
  ctx: Context,
  exploration: ExplorationRow,
  task: Task,
  upstream: Upstream,
  quota: { turn: RunTicket; tickets: RunTickets },
): Promise<ExplorationBranchRow | null> {
  const { level, prompt } = task;
  const branch = await fork(ctx, exploration, task).catch((error: unknown) => {
    quota.turn.cancel(); // its run never started: the slot goes back
    throw error;
  });
  const common = {
    sessionId: exploration.sessionId,
    branchId: branch.id,
    userId: exploration.userId,
    timeoutMs: null,
  };
  const thisCandidate = and(
    eq(explorationBranches.explorationId, exploration.id),
    eq(explorationBranches.branchId, branch.id),
  );
  const turn = await startCounted(ctx.runner, quota.turn, {
    ...common,
    kind: "PROMPT",
    input: prompt,
    upstream,
  });
  await ctx.runner.wait(turn.id);
  const scoreTicket = await quota.tickets.next();
  if (!scoreTicket) {
    await ctx.db.update(explorationBranches).set({ runId: turn.id }).where(thisCandidate);
    return null;
  }
  const scoring = await startCounted(ctx.runner, scoreTicket, {
    ...common,
    kind: "EXEC",
    input: exploration.scoreCommand,
  });
  const scored = await ctx.runner.wait(scoring.id);
  const { passed, score } = scoreOf(scored.exitCode, scored.output);
  const [updated] = await ctx.db
    .update(explorationBranches)
    .set({ runId: turn.id, scoreRunId: scoring.id, passed, score })
    .where(thisCandidate)
    .returning();
  await publish(ctx, {
    kind: "BRANCH_SCORED",
    explorationId: exploration.id,
    branchId: branch.id,
    level,
    passed,
    score,
  });
  return updated!;
}

/** A candidate's branch forked from `from`, with its row; announced on the session and the exploration. */
async function fork(ctx: Context, exploration: ExplorationRow, task: Task): Promise<{ id: string }> {
  const { from, level, index, prompt } = task;
  const [branch] = await ctx.db
    .insert(branches)
    .values({
      id: newId("br"),
      sessionId: exploration.sessionId,
      name: `explore-${exploration.id.slice(-6)}-l${level}-${index + 1}`,
      headSnapshotId: from.id,
      createdAt: new Date(),
    })
    .returning();
  await publishSessionEvent(ctx, {
    kind: "BRANCH_CREATED",
    sessionId: exploration.sessionId,
    branchId: branch!.id,
    snapshotId: from.id,
  });
  await publish(ctx, { kind: "BRANCH_STARTED", explorationId: exploration.id, branchId: branch!.id, level });
  await ctx.db
    .insert(explorationBranches)
    .values({ explorationId: exploration.id, branchId: branch!.id, level, prompt, createdAt: new Date() });
  return branch!;
}

export const loadExploration = (ctx: Context, id: string): Promise<ExplorationRow> =>
  loadInSession(ctx, ctx.loaders.exploration, id, "VIEWER", "Exploration");

export function explorationBranchesOf(ctx: Context, explorationId: string): Promise<ExplorationBranchRow[]> {
  return ctx.db
    .select()
    .from(explorationBranches)
    .where(eq(explorationBranches.explorationId, explorationId))
    .orderBy(explorationBranches.createdAt);
}

/** Live progress of an exploration; ends with FINISHED. */
export async function* explorationEvents(ctx: Context, id: string): AsyncGenerator<ExplorationEvent> {
  const exploration = await loadExploration(ctx, id);
  if (exploration.status !== "RUNNING") {
    yield { kind: "FINISHED", explorationId: id, branchId: exploration.bestBranchId };
    return;
  }
  // From the topic's start (after: 0), so progress made before the subscription arrives too.
  yield* payloadsOf<ExplorationEvent>(ctx.bus, topics.exploration(id), {
    after: 0,
    last: (payload) => payload.kind === "FINISHED",
  });
}
