// Runs over GraphQL: exec (returns at once, output streams), abort, history, and the output stream.
import { and, eq } from "drizzle-orm";
import { type BusEvent, payloadsOf, topics } from "../bus/bus.ts";
import { type RunRow, runs } from "../db/schema.ts";
import { loadInSession } from "./access.ts";
import { loadBranch } from "./branch.ts";
import type { Context } from "./context.ts";
import { AppError, badInput, conflict } from "./errors.ts";
import { modelFor } from "./model-keys.ts";
import { keysetPage, type Page, type PageArgs } from "./pagination.ts";
import { startCounted } from "./run-quota.ts";
import { endFromRow, storedTrail } from "./run-trail.ts";
import type { RunStreamEvent } from "./runner.ts";

const MAX_COMMAND = 100_000;

export const loadRun = (ctx: Context, id: string, need: "VIEWER" | "EDITOR"): Promise<RunRow> =>
  loadInSession(ctx, ctx.loaders.run, id, need, "Run");

export async function exec(
  ctx: Context,
  args: { branchId: string; command: string; timeoutMs?: number | null },
): Promise<RunRow> {
  const branch = await loadBranch(ctx, args.branchId, "EDITOR");
  if (!args.command.trim()) throw badInput("command is empty", "command");
  if (args.command.length > MAX_COMMAND)
    throw badInput(`command must be at most ${MAX_COMMAND} characters`, "command");
  await ctx.quota.assertCanStore(branch.sessionId);
  const max = ctx.limits.maxRunTimeoutMs;
  if (
    args.timeoutMs !== null &&
    args.timeoutMs !== undefined &&
    (args.timeoutMs < 100 || args.timeoutMs > max)
  ) {
    throw badInput(`timeoutMs must be 100 to ${max}`, "timeoutMs");
  }
  // Runs at once and run-seconds per day, per user over every instance (run-quota.ts).
  const ticket = await ctx.runQuota.begin(ctx.viewer!.userId, args.timeoutMs ?? null);
  return startCounted(ctx.runner, ticket, {
    kind: "EXEC",
    sessionId: branch.sessionId,
    branchId: branch.id,
    userId: ctx.viewer!.userId,
    input: args.command,
    timeoutMs: args.timeoutMs ?? null,
  });
}

const MAX_PROMPT = 100_000;

/** One agent turn on the branch, as a run; its events stream by runOutput and agentEvents. */
export async function prompt(ctx: Context, args: { branchId: string; text: string }): Promise<RunRow> {
  const branch = await loadBranch(ctx, args.branchId, "EDITOR");
  if (!args.text.trim()) throw badInput("text is empty", "text");
  if (args.text.length > MAX_PROMPT) throw badInput(`text must be at most ${MAX_PROMPT} characters`, "text");
  await ctx.quota.assertCanStore(branch.sessionId);
  // Both the server's set-up and the model may be missing: say everything that is, in one error.
  const unavailable = ctx.agentUnavailable((await ctx.loaders.session.load(branch.sessionId))!.provider);
  const model = await modelFor(ctx, ctx.viewer!.userId).catch((error: unknown) => {
    if (error instanceof AppError && error.code === "UNAVAILABLE") return error;
    throw error;
  });
  if (unavailable || model instanceof AppError) {
    const reasons = [unavailable, model instanceof AppError ? model.message : null].filter(Boolean);
    throw new AppError("UNAVAILABLE", reasons.join(". "));
  }
  const upstream = model;
  const ticket = await ctx.runQuota.begin(ctx.viewer!.userId, null);
  const run = await startCounted(ctx.runner, ticket, {
    upstream,
    kind: "PROMPT",
    sessionId: branch.sessionId,
    branchId: branch.id,
    userId: ctx.viewer!.userId,
    input: args.text,
    timeoutMs: null,
  });
  // Everyone in the session sees the conversation in its shared chat.
  const user = await ctx.loaders.user.load(ctx.viewer!.userId);
  await ctx.chat
    .append(branch.sessionId, {
      author: { kind: "user", id: ctx.viewer!.userId, name: user?.name ?? user?.email ?? "user" },
      text: args.text,
      at: new Date().toISOString(),
      runId: run.id,
    })
    .catch((error) => ctx.log.warn("could not record the prompt in the chat", { error: String(error) }));
  return run;
}

/** Agent events of every run on a branch, live. */
export async function* agentEvents(
  ctx: Context,
  branchId: string,
): AsyncGenerator<RunStreamEvent & { type: "agent" }> {
  await loadBranch(ctx, branchId, "VIEWER");
  yield* payloadsOf<RunStreamEvent & { type: "agent" }>(ctx.bus, topics.agent(branchId));
}

export async function abortRun(ctx: Context, id: string): Promise<RunRow> {
  const run = await loadRun(ctx, id, "EDITOR");
  if (run.status === "QUEUED" || run.status === "RUNNING") {
    // Here, or on the instance that executes it (told directly, or through the request recorded on
    // the run: runner.ts abortAnywhere): the client need not know which.
    if (!(await ctx.runner.abortAnywhere(run.id))) throw conflict("This run is not running on any instance");
    // Give the run a moment (1 s at most) to end, so the reply usually shows its final state.
    const oneSecond = new Promise<null>((resolve) => setTimeout(() => resolve(null), 1000).unref?.());
    const ended = await Promise.race([ctx.runner.wait(run.id), oneSecond]);
    if (ended) return ended;
  }
  const [row] = await ctx.db.select().from(runs).where(eq(runs.id, id));
  return row!;
}

/** Runs of a session or of one branch, newest first, paged either way (keysetPage). */
export function listRuns(
  ctx: Context,
  where: { sessionId: string } | { branchId: string },
  args: PageArgs,
): Promise<Page<RunRow>> {
  const scope =
    "sessionId" in where ? eq(runs.sessionId, where.sessionId) : eq(runs.branchId, where.branchId);
  return keysetPage(args, { createdAt: runs.createdAt, id: runs.id, dir: "desc" }, (w) =>
    ctx.db
      .select()
      .from(runs)
      .where(and(scope, w.where))
      .orderBy(...w.orderBy)
      .limit(w.limit),
  );
}

/**
 * A run's output: the stored trail first (run-trail.ts), then what is streamed live, then the end;
 * each event once, in seq order. A finished run replays exactly what its live subscribers saw; a
 * running one joins the stored trail, the events this instance has not committed yet and the live
 * stream without a gap (the subscription starts before anything is read; duplicates are dropped by seq).
 */
export async function* runOutput(ctx: Context, runId: string): AsyncGenerator<RunStreamEvent> {
  await loadRun(ctx, runId, "VIEWER");
  let memory = ctx.runner.replay(runId);
  let live: AsyncIterableIterator<BusEvent<RunStreamEvent>> | null = null;
  if (memory) {
    live = ctx.bus.subscribe<RunStreamEvent>(topics.run(runId));
    memory = ctx.runner.replay(runId)!; // again, now that nothing streamed can be missed
  } else {
    const [row] = await ctx.db.select().from(runs).where(eq(runs.id, runId));
    // Running on another instance: the bus's retained history covers what it has streamed but not
    // committed yet. A finished run's row is written after its whole trail: the database has it all.
    if (row!.status === "QUEUED" || row!.status === "RUNNING")
      live = ctx.bus.subscribe<RunStreamEvent>(topics.run(runId), { after: 0 });
  }
  try {
    let last = 0;
    for await (const event of storedTrail(ctx.db, runId, memory?.committedThrough)) {
      last = event.seq;
      yield event;
      if (event.type === "end") return;
    }
    if (!live) {
      // Ended without a stored end: a run from before trails were kept (its answer text is all
      // there is), or one a stopped server left behind (INTERRUPTED at the next start).
      const [row] = await ctx.db.select().from(runs).where(eq(runs.id, runId));
      if (last === 0 && row!.output)
        yield { type: "chunk", seq: ++last, stream: "stdout", text: row!.output };
      yield endFromRow(row!, last + 1);
      return;
    }
    for (const event of memory?.events ?? []) {
      if (event.seq <= last) continue;
      last = event.seq;
      yield event;
      if (event.type === "end") return;
    }
    for await (const { payload } of live) {
      if (payload.seq <= last) continue;
      last = payload.seq;
      yield payload;
      if (payload.type === "end") return;
    }
  } finally {
    await live?.return?.();
  }
}
