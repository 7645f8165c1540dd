// Runs: one command (or, later, one agent turn) on a branch, from QUEUED to its end. Output streams
// on the bus as numbered chunks and is kept in memory for late subscribers; it is flushed to the
// database every second, so a crash loses at most a second of it. Every finished run records a
// snapshot and moves the branch head: the audit trail. The exception is a command that wrote more than
// it may (its write cap, or what is left of a storage quota): its writes are discarded, never stored.
import { and, eq, inArray, isNotNull, isNull, ne, or } from "drizzle-orm";
import { type AgentEvent, LineSplitter } from "../agent/events.ts";
import type { ModelGateway, Upstream, Usage } from "../agent/gateway.ts";
import type { ForwardedAnswer, TurnRequest, TurnResult } from "../agent/live/branch-server.ts";
import type { AgentPool } from "../agent/live/pool.ts";
import { opencodeRunTurn, runLineEvents } from "../agent/opencode-run.ts";
import { type PermissionReplier, type PermissionReply, permissionRules } from "../agent/permissions.ts";
import type { Bus } from "../bus/bus.ts";
import { topics } from "../bus/bus.ts";
import type { Ownership } from "../cluster/ownership.ts";
import { PeerError } from "../cluster/peer-client.ts";
import type { OwnerOps } from "../cluster/routes.ts";
import type { Db } from "../db/client.ts";
import { newId } from "../db/ids.ts";
import { type RunRow, type RunStatus, runs, sessions } from "../db/schema.ts";
import type { ExecOptions, ExecResult, KillReason } from "../sandbox/provider.ts";
import { type BranchRuntime, type BranchSandbox, fromPeer } from "./branch-runtime.ts";
import type { Logger } from "./context.ts";
import { AppError, conflict, notFound } from "./errors.ts";
import { publishSessionEvent } from "./events.ts";
import { type Quotas, runQuotaError } from "./quota.ts";
import { DEFAULT_TRAIL_LIMITS, RunTrail, type TrailLimits } from "./run-trail.ts";
import { headRef, recordSnapshot } from "./snapshot-records.ts";

/** What the database keeps of a run's output (the live stream is not capped by this). */
const MAX_STORED_OUTPUT = 1024 * 1024;
const FLUSH_MS = 1000;
/** How often an instance with live runs looks for abort requests recorded in the database. */
const ABORT_CHECK_MS = 1000;
/** A sandbox base no snapshot has: the branch runtime resets such a sandbox before its next work. */
const DISCARDED = "(discarded)";

export type RunStreamEvent =
  | { type: "chunk"; seq: number; stream: "stdout" | "stderr"; text: string }
  | { type: "agent"; seq: number; runId: string; event: AgentEvent }
  | { type: "end"; seq: number; status: RunStatus; exitCode: number | null; snapshotId: string | null }
  /** The run's stored trail stops here (its cap was reached); later events were streamed, not stored. */
  | {
      type: "truncated";
      seq: number;
      storedEvents: number;
      storedBytes: number;
      maxEvents: number;
      maxBytes: number;
    };

interface LiveRun {
  row: RunRow;
  upstream: Upstream | null;
  /** Resolves when the run has ended (its row is final). */
  finished: Promise<void>;
  markFinished: () => void;
  /** Every event streamed, stored in batches (run-trail.ts); holds those not yet committed. */
  trail: RunTrail;
  seq: number;
  ended: boolean;
  controller: AbortController;
  output: string;
  truncated: boolean;
  /** Permission asks of the turn not answered yet; answers on their way through the platform; answered ones. */
  asks: Set<string>;
  answering: Map<string, { message: string | null; userId: string }>;
  answered: Set<string>;
  /** A turn an attached opencode client asked for (the attach proxy): its request, and who waits for the answer. */
  forward: ForwardedTurn | null;
}

/** An opencode client's own request that starts a turn, run as a PROMPT run (agent/live). */
export interface ForwardedTurn {
  request: Extract<TurnRequest, { kind: "forward" }>;
  /** Called with opencode's answer as soon as it comes, else null once the turn is over (it never reached the server). */
  onAnswer(answer: ForwardedAnswer | null): void;
}

/** What a running agent turn has told so far: its gateway token (per-turn runs), cost, whether it ended. */
interface AgentTurnState {
  token: string | null;
  cost: number;
  done: boolean;
}

export interface RunnerDeps {
  db: Db;
  bus: Bus;
  runtime: BranchRuntime;
  log: Logger;
  /** What a run may write (storage quotas, the command cap, the free-disk floor). */
  quota: Quotas;
  /** Where agent answers are recorded for everyone in the session to see. */
  chat?: import("./context.ts").SessionChat;
  /** Agent runs: the gateway and the model behind it (null: no model configured). */
  gateway: ModelGateway | null;
  /** The gateway's base URL as network-only sandboxes (contree) reach it; null when it has none. */
  gatewayURL: string | null;
  model: Upstream | null;
  /** How much of each run's stream is stored for replay. */
  trail?: TrailLimits;
  /** Live agents (a kept-alive opencode server per branch) for providers that can run services. */
  agents?: AgentPool | null;
  /** Longest agent turn on a live server when the run sets no limit (the command limit). */
  turnTimeoutMs?: number;
  /** Answers the agent's permission asks (the live agent pool); absent where agents cannot be asked. */
  permissions?: PermissionReplier | null;
  /** Instances and branch owners (cluster/); absent or solo: one instance, every run here. */
  cluster?: Ownership | null;
}

const ACTIVE: RunStatus[] = ["QUEUED", "RUNNING"];
/** The end an instance publishes for a run whose executing instance is gone: after anything it streamed. */
const LAST_SEQ = 2 ** 31 - 1; // the largest GraphQL Int
const GONE = "The server running this run stopped (its instance is gone); run it again";

export class Runner {
  private readonly live = new Map<string, LiveRun>();
  /** The check for recorded abort requests: running only while this instance has live runs. */
  private abortCheck: ReturnType<typeof setInterval> | null = null;
  private abortChecking = false;

  constructor(private readonly deps: RunnerDeps) {}

  /** This instance's id in the cluster (null alone: no run is anyone else's). */
  private get instanceId(): string | null {
    const cluster = this.deps.cluster;
    return cluster && !cluster.solo ? cluster.self.id : null;
  }

  /**
   * Marks runs a previous process left QUEUED or RUNNING as INTERRUPTED (called at start-up). With
   * other instances, only runs of instances that are gone: a live instance's runs are its own.
   */
  async recoverInterrupted(): Promise<number> {
    if (this.instanceId === null) {
      const stale = await this.deps.db
        .update(runs)
        .set({
          status: "INTERRUPTED",
          finishedAt: new Date(),
          error: "The server stopped while this run was in progress",
        })
        .where(inArray(runs.status, ACTIVE))
        .returning({ id: runs.id });
      return stale.length;
    }
    return this.interruptRunsOfGoneInstances();
  }

  /**
   * Runs left QUEUED or RUNNING by instances that are gone (killed, or paused past their heartbeat)
   * end as INTERRUPTED, and their live readers get the end. Called at start-up, every lease period and
   * when this instance takes a branch over.
   */
  async interruptRunsOfGoneInstances(branchId?: string): Promise<number> {
    const cluster = this.deps.cluster;
    if (!cluster || cluster.solo) return 0;
    const self = cluster.self.id;
    const holders = await this.deps.db
      .selectDistinct({ instanceId: runs.instanceId })
      .from(runs)
      .where(
        and(
          inArray(runs.status, ACTIVE),
          or(isNull(runs.instanceId), ne(runs.instanceId, self)),
          branchId ? eq(runs.branchId, branchId) : undefined,
        ),
      );
    let count = 0;
    for (const { instanceId } of holders) {
      // Unknown (the shared store is unreachable) counts as alive: the next sweep decides.
      if (instanceId && (await cluster.alive(instanceId).catch(() => true))) continue;
      const stale = await this.deps.db
        .update(runs)
        .set({ status: "INTERRUPTED", finishedAt: new Date(), error: GONE })
        .where(
          and(
            inArray(runs.status, ACTIVE),
            instanceId ? eq(runs.instanceId, instanceId) : isNull(runs.instanceId),
            branchId ? eq(runs.branchId, branchId) : undefined,
          ),
        )
        .returning();
      for (const row of stale) await this.announceEnd(row);
      count += stale.length;
    }
    return count;
  }

  /** Tells a run's readers anywhere that it ended (it ended without its executing instance). */
  private async announceEnd(row: RunRow) {
    const end: RunStreamEvent = {
      type: "end",
      seq: LAST_SEQ,
      status: row.status,
      exitCode: null,
      snapshotId: null,
    };
    await this.deps.bus.publish(topics.run(row.id), end).catch(() => {});
    await publishSessionEvent(this.deps, {
      kind: "RUN_FINISHED",
      sessionId: row.sessionId,
      branchId: row.branchId,
      runId: row.id,
    }).catch(() => {});
  }

  /** Queues a run (a command, or an agent turn for a prompt); resolves once it is recorded (QUEUED). */
  async start(input: {
    kind: "EXEC" | "PROMPT";
    sessionId: string;
    branchId: string;
    userId: string;
    /** The command, or the prompt text. */
    input: string;
    timeoutMs: number | null;
    /** Agent runs: the model to use (the user's own, or the platform's). */
    upstream?: Upstream;
    /** Agent runs started by an attached opencode client: its request, forwarded as the turn. */
    forward?: ForwardedTurn;
  }): Promise<RunRow> {
    // The branch's owner executes the run; this instance records it either way.
    const where = await this.deps.runtime.locate(input.branchId);
    if (!where.here && input.forward)
      throw new AppError("UNAVAILABLE", "Another instance took this branch over; try again", {
        retryable: true,
      });
    const [row] = await this.deps.db
      .insert(runs)
      .values({
        id: newId("run"),
        sessionId: input.sessionId,
        branchId: input.branchId,
        userId: input.userId,
        kind: input.kind,
        status: "QUEUED",
        input: input.input,
        timeoutMs: input.timeoutMs,
        instanceId: this.instanceId,
        createdAt: new Date(),
      })
      .returning();
    await publishSessionEvent(this.deps, {
      kind: "RUN_QUEUED",
      sessionId: input.sessionId,
      branchId: input.branchId,
      runId: row!.id,
    });
    if (!where.here) return this.startElsewhere(row!, where.peer, input.upstream ?? null);
    this.launch(row!, input.upstream ?? null, input.forward ?? null);
    return row!;
  }

  /**
   * Hands a recorded run to the branch's owner. An owner that does not answer and is gone is taken
   * over (the run executes here, from the branch's head); one that is alive but did not answer leaves
   * the run INTERRUPTED and the caller an UNAVAILABLE error to retry.
   */
  private async startElsewhere(
    row: RunRow,
    peer: import("../cluster/peer-client.ts").Peer,
    upstream: Upstream | null,
  ): Promise<RunRow> {
    const cluster = this.deps.cluster!;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await peer.call("run.start", { runId: row.id, upstream }, { timeoutMs: 15_000 });
        return row;
      } catch (error) {
        if (!(error instanceof PeerError && error.kind === "unreachable")) {
          await this.interrupt(row, `The branch's owner refused the run: ${(error as Error).message}`);
          throw fromPeer(error);
        }
        // Accepted after all (the answer was lost)?
        const [now] = await this.deps.db.select().from(runs).where(eq(runs.id, row.id));
        if (now?.instanceId === peer.instanceId) return row;
        if (await cluster.alive(peer.instanceId).catch(() => true)) break;
        const where = await this.deps.runtime.locate(row.branchId);
        if (where.here) {
          this.launch(row, upstream, null);
          return row;
        }
        peer = where.peer;
      }
    }
    await this.interrupt(row, "The instance that holds this branch did not answer", true);
    throw new AppError("UNAVAILABLE", "The instance that holds this branch did not answer; try again", {
      retryable: true,
      runId: row.id,
    });
  }

  /** Ends a run that never started; `unclaimed`: only if no owner took it meanwhile. */
  private async interrupt(row: RunRow, error: string, unclaimed = false) {
    const [ended] = await this.deps.db
      .update(runs)
      .set({ status: "INTERRUPTED", finishedAt: new Date(), error })
      .where(
        and(
          eq(runs.id, row.id),
          inArray(runs.status, ACTIVE),
          unclaimed && this.instanceId ? eq(runs.instanceId, this.instanceId) : undefined,
        ),
      )
      .returning();
    if (ended) await this.announceEnd(ended);
  }

  /**
   * The owner's side of `run.start`: a run another instance recorded (QUEUED) executes here. Taking
   * it is one conditional update, so a repeated call is harmless and a run already ended is refused.
   */
  async adoptQueued(runId: string, upstream: Upstream | null): Promise<void> {
    if (this.live.has(runId)) return;
    const [row] = await this.deps.db
      .update(runs)
      .set({ instanceId: this.instanceId })
      .where(and(eq(runs.id, runId), eq(runs.status, "QUEUED")))
      .returning();
    if (!row) throw conflict("This run is no longer queued");
    this.launch(row, upstream, null);
  }

  /** Starts executing a recorded run here: queued on its branch, after the branch's earlier work. */
  private launch(row: RunRow, upstream: Upstream | null, forward: ForwardedTurn | null): void {
    let markFinished!: () => void;
    const finished = new Promise<void>((resolve) => {
      markFinished = resolve;
    });
    const live: LiveRun = {
      row,
      finished,
      markFinished,
      upstream,
      trail: new RunTrail(this.deps.db, row.id, this.deps.trail ?? DEFAULT_TRAIL_LIMITS, (error) =>
        this.deps.log.warn("could not store a run's events (retrying)", {
          runId: row.id,
          error: String(error),
        }),
      ),
      seq: 0,
      ended: false,
      controller: new AbortController(),
      output: "",
      truncated: false,
      asks: new Set(),
      answering: new Map(),
      answered: new Set(),
      forward,
    };
    this.live.set(row.id, live);
    this.watchAbortRequests();
    void this.deps.runtime
      .enqueue(
        row.branchId,
        () => headRef(this.deps.db, row.branchId),
        (sandbox) => this.execute(live, sandbox),
        { slot: true, ownerOnly: true },
      )
      .catch((error) => this.fail(live, error));
  }

  /** The run's final row, once it has ended (at once if it already has). */
  async wait(runId: string): Promise<RunRow> {
    const live = this.live.get(runId);
    if (live) await live.finished;
    else if (this.instanceId) return this.waitElsewhere(runId);
    const [row] = await this.deps.db.select().from(runs).where(eq(runs.id, runId));
    return row!;
  }

  /**
   * A run executing on another instance: its end on the bus wakes the wait; the row is checked every
   * few seconds too (an end published before this wait subscribed, or by nobody).
   */
  private async waitElsewhere(runId: string): Promise<RunRow> {
    const events = this.deps.bus.subscribe<RunStreamEvent>(topics.run(runId));
    const ended = (async () => {
      for await (const { payload } of events) if (payload.type === "end") return;
    })().catch(() => {});
    try {
      for (;;) {
        const [row] = await this.deps.db.select().from(runs).where(eq(runs.id, runId));
        if (!row || !ACTIVE.includes(row.status)) return row!;
        await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 2000))]);
      }
    } finally {
      await events.return?.();
    }
  }

  /**
   * Aborts a queued or running run wherever it executes: here, on the live instance that runs it, or,
   * when that instance is gone, by marking it INTERRUPTED. False when it is not running anywhere.
   *
   * For another live instance the request is recorded on the run first (`abort_requested_at`), which
   * that instance checks every second while it has live runs; then, where instances can call each
   * other, it is also sent to it directly (faster). So an abort needs no call between instances:
   * PROFILE=serverless relies on the record alone, and a forward that fails (the owner cannot be
   * reached) still leaves the request to be noticed.
   */
  async abortAnywhere(runId: string): Promise<boolean> {
    if (this.abort(runId)) return true;
    const cluster = this.deps.cluster;
    if (!cluster || cluster.solo) return false;
    const [row] = await this.deps.db.select().from(runs).where(eq(runs.id, runId));
    if (!row || !ACTIVE.includes(row.status) || !row.instanceId || row.instanceId === cluster.self.id)
      return false;
    const peer = await cluster.peer(row.instanceId);
    if (!peer) {
      await this.interruptRunsOfGoneInstances(row.branchId);
      return true;
    }
    const [recorded] = await this.deps.db
      .update(runs)
      .set({ abortRequestedAt: new Date() })
      .where(and(eq(runs.id, runId), inArray(runs.status, ACTIVE)))
      .returning({ id: runs.id });
    // Ended meanwhile: nothing left to abort, and its final row is what the caller reads.
    if (!recorded) return true;
    if (!cluster.forwards) return true;
    try {
      return await peer.call<boolean>("run.abort", { runId }, { timeoutMs: 10_000 });
    } catch (error) {
      if (error instanceof PeerError && error.kind === "unreachable") {
        this.deps.log.warn("could not tell the instance running a run to abort it; it will see the request", {
          runId,
          instanceId: row.instanceId,
          error: error.message,
        });
        return true;
      }
      throw fromPeer(error);
    }
  }

  /** Starts the check for recorded abort requests (a no-op while it runs). */
  private watchAbortRequests(): void {
    if (this.abortCheck) return;
    this.abortCheck = setInterval(() => void this.checkAbortRequests(), ABORT_CHECK_MS);
    this.abortCheck.unref?.();
  }

  /**
   * Aborts the live runs here that another instance asked to abort through the database: one query by
   * primary key over this instance's live runs; the check stops when none is left.
   */
  async checkAbortRequests(): Promise<void> {
    if (this.abortChecking) return;
    const ids = [...this.live.values()].filter((live) => !live.ended).map((live) => live.row.id);
    if (ids.length === 0) {
      if (this.abortCheck) clearInterval(this.abortCheck);
      this.abortCheck = null;
      return;
    }
    this.abortChecking = true;
    try {
      const requested = await this.deps.db
        .select({ id: runs.id })
        .from(runs)
        .where(and(inArray(runs.id, ids), isNotNull(runs.abortRequestedAt), inArray(runs.status, ACTIVE)));
      for (const { id } of requested) this.abort(id);
    } catch (error) {
      this.deps.log.warn("could not check for abort requests", { error: String(error) });
    } finally {
      this.abortChecking = false;
    }
  }

  /** Aborts a queued or running run; false when it is not live here. */
  abort(runId: string): boolean {
    const live = this.live.get(runId);
    if (!live) return false;
    // Asked twice (directly and through the database): the second is told it was done.
    if (live.controller.signal.aborted) return true;
    if (live.ended) return false;
    live.controller.abort();
    // A run still waiting for its turn ends now; when its turn comes it is skipped.
    if (live.row.status === "QUEUED") {
      void this.finish(live, {
        status: "ABORTED",
        exitCode: null,
        snapshotId: null,
        killedBy: "abort",
      }).catch((error) => this.deps.log.error("abort failed", { runId, error: String(error) }));
    }
    return true;
  }

  /** The run executing on a branch here now (not one still queued), if any. */
  runningOn(branchId: string): string | null {
    for (const live of this.live.values())
      if (live.row.branchId === branchId && !live.ended && live.row.status === "RUNNING") return live.row.id;
    return null;
  }

  /** Aborts every live run of a branch (the branch or its session is going away). */
  abortBranch(branchId: string): void {
    for (const live of this.live.values())
      if (live.row.branchId === branchId && !live.ended) live.controller.abort();
  }

  /**
   * What a late subscriber needs besides the stored trail (synchronous, so nothing falls between):
   * the seq the database holds the trail up to, and the streamed events after it. Null when the run
   * is not live here.
   */
  replay(runId: string): { committedThrough: number; events: RunStreamEvent[]; ended: boolean } | null {
    const live = this.live.get(runId);
    return live ? { ...live.trail.snapshot(), ended: live.ended } : null;
  }

  /**
   * Answers a permission ask of a running turn (ONCE, ALWAYS or REJECT) through the branch's live
   * agent; the answer becomes a `permission.replied` event of the run, with who gave it.
   */
  async answerPermission(
    runId: string,
    permissionId: string,
    answer: { reply: PermissionReply; message: string | null; userId: string },
  ): Promise<void> {
    const live = this.live.get(runId);
    if (!live && (await this.answerElsewhere(runId, permissionId, answer))) return;
    if (!live || live.ended) throw conflict("This run is not running on this server instance");
    if (live.answered.has(permissionId) || live.answering.has(permissionId))
      throw conflict("This permission request was already answered");
    if (!live.asks.has(permissionId)) throw notFound("Permission request");
    const replier = this.deps.permissions;
    if (!replier) throw new AppError("NOT_SUPPORTED", "This agent cannot be asked for approval");
    live.answering.set(permissionId, { message: answer.message, userId: answer.userId });
    try {
      await replier.replyPermission(
        live.row.branchId,
        permissionId,
        answer.reply,
        answer.message ?? undefined,
      );
    } catch (error) {
      live.answering.delete(permissionId);
      if (error instanceof AppError) throw error;
      this.deps.log.warn("could not answer a permission request", { runId, error: String(error) });
      throw new AppError("UNAVAILABLE", "The agent could not be reached to answer; try again");
    }
    // opencode's own echo of the answer may have come first (and was told with who answered).
    if (!live.answered.has(permissionId))
      this.emitAgent(live, {
        type: "permission.replied",
        id: permissionId,
        reply: answer.reply,
        message: answer.message,
        userId: answer.userId,
      });
  }

  /** Passes an answer on to the instance that executes the run; false when none does. */
  private async answerElsewhere(
    runId: string,
    permissionId: string,
    answer: { reply: PermissionReply; message: string | null; userId: string },
  ): Promise<boolean> {
    const cluster = this.deps.cluster;
    if (!cluster || cluster.solo) return false;
    const [row] = await this.deps.db.select().from(runs).where(eq(runs.id, runId));
    if (!row?.instanceId || row.instanceId === cluster.self.id || !ACTIVE.includes(row.status)) return false;
    const peer = await cluster.peer(row.instanceId);
    if (!peer) return false;
    try {
      await peer.call("run.answer", { runId, permissionId, ...answer }, { timeoutMs: 30_000 });
      return true;
    } catch (error) {
      throw fromPeer(error);
    }
  }

  private emitAgent(live: LiveRun, event: AgentEvent) {
    if (event.type === "permission.asked") live.asks.add(event.id);
    if (event.type === "permission.replied") {
      if (live.answered.has(event.id)) return; // told once, whoever reported it first
      const ours = live.answering.get(event.id);
      if (ours) event = { ...event, message: ours.message, userId: ours.userId };
      live.answered.add(event.id);
      live.asks.delete(event.id);
    }
    const wrapped: RunStreamEvent = { type: "agent", seq: ++live.seq, runId: live.row.id, event };
    this.emit(live, wrapped);
    void this.deps.bus.publish(topics.agent(live.row.branchId), wrapped);
  }

  /** Streams an event and keeps it for the trail (a cut trail streams its marker first). */
  private emit(live: LiveRun, event: RunStreamEvent) {
    const marker = live.trail.record(event);
    if (marker) {
      this.publish(live, marker);
      event.seq = ++live.seq;
    }
    this.publish(live, event);
  }

  private publish(live: LiveRun, event: RunStreamEvent) {
    void this.deps.bus.publish(topics.run(live.row.id), event);
  }

  private async update(live: LiveRun, values: Partial<RunRow>) {
    Object.assign(live.row, values);
    await this.deps.db.update(runs).set(values).where(eq(runs.id, live.row.id));
  }

  private async execute(live: LiveRun, sandbox: BranchSandbox) {
    const { db } = this.deps;
    const { provider } = sandbox;
    const { row } = live;
    if (live.ended) return; // aborted while queued

    const startedAt = new Date();
    const startedFrom = sandbox.files.head;
    await this.update(live, { status: "RUNNING", startedAt });
    await publishSessionEvent(this.deps, {
      kind: "RUN_STARTED",
      sessionId: row.sessionId,
      branchId: row.branchId,
      runId: row.id,
    });

    // What this run may write: the least of the command cap and what is left of every quota.
    const room = await this.deps.quota.writeRoom(row.sessionId);
    if (room.bytes <= 0) {
      await this.finish(live, {
        status: "FAILED",
        exitCode: null,
        snapshotId: null,
        killedBy: "quota",
        startedAt,
        error: runQuotaError("before", room),
      });
      return;
    }

    const upstream = live.upstream ?? this.deps.model;
    if (row.kind === "PROMPT" && !upstream) throw new Error("agent run without a model");
    const flush = setInterval(() => {
      void db
        .update(runs)
        .set({ output: live.output, outputTruncated: live.truncated })
        .where(eq(runs.id, row.id))
        .catch(() => {});
    }, FLUSH_MS);
    // Providers that run sandbox services keep a live agent per branch (agent/live); the others run
    // one `opencode run` per turn as a command, with a token of the run's own.
    const pool =
      row.kind === "PROMPT" && upstream && this.deps.agents?.supports(provider) ? this.deps.agents : null;
    const agent =
      row.kind === "PROMPT" && upstream
        ? { token: pool ? null : this.deps.gateway!.grant(row.id, upstream), cost: 0, done: false }
        : null;
    let result: ExecResult;
    let usage: Usage | null = null;
    try {
      if (pool) {
        ({ result, usage } = await this.liveTurn(live, sandbox, pool, upstream!, agent!, room.bytes));
      } else {
        result = await provider.exec(sandbox.id, {
          ...(agent ? this.agentOptions(live, agent) : this.commandOptions(live)),
          ...(row.timeoutMs ? { timeoutMs: row.timeoutMs } : {}),
          maxWriteBytes: room.bytes,
          signal: live.controller.signal,
        });
      }
    } finally {
      clearInterval(flush);
      // The run's model token dies with the run, however it ended.
      if (agent?.token) usage = this.deps.gateway!.revoke(agent.token);
    }

    if (result.killedBy === "disk") {
      await this.discardWrites(live, sandbox);
      await this.finish(live, {
        status: "FAILED",
        exitCode: null,
        snapshotId: null,
        killedBy: "disk",
        durationMs: result.durationMs,
        cpuMs: result.cpuMs,
        startedAt,
        error: runQuotaError("disk", room),
      });
      return;
    }

    // Fencing: an instance paused past its lease while another took the branch over must not move
    // the head under the new owner; its writes are not recorded.
    if (!(await this.deps.runtime.stillOwns(row.branchId))) {
      await this.finish(live, {
        status: "INTERRUPTED",
        exitCode: null,
        snapshotId: null,
        killedBy: null,
        durationMs: result.durationMs,
        startedAt,
        error:
          "Another instance took this branch over while the run was in progress; its writes were not recorded",
      });
      return;
    }
    // The audit trail: whatever the run left in the workspace becomes the branch's new head (only if
    // the head is still the one the run started from).
    const snapshot = await recordSnapshot(db, {
      expectedHeadRef: startedFrom,
      sandboxId: sandbox.id,
      provider,
      branchId: row.branchId,
      origin: "RUN",
      runId: row.id,
      userId: row.userId,
    });
    sandbox.setBase(snapshot.providerRef);
    await publishSessionEvent(this.deps, {
      kind: "SNAPSHOT_ADDED",
      sessionId: row.sessionId,
      branchId: row.branchId,
      snapshotId: snapshot.id,
    });
    await publishSessionEvent(this.deps, {
      kind: "HEAD_MOVED",
      sessionId: row.sessionId,
      branchId: row.branchId,
      snapshotId: snapshot.id,
    });

    // An agent run succeeds only if the turn reached its end, whatever the process exit said.
    const succeeded = result.exitCode === 0 && !result.killedBy && (!agent || agent.done);
    let status: RunStatus = result.killedBy === "abort" ? "ABORTED" : succeeded ? "SUCCEEDED" : "FAILED";
    // Runs on other branches may have written at the same time: the one whose snapshot took the
    // storage over a quota says so (and everything after is refused until space is freed).
    const over =
      snapshot.addedBytes > 0 ? await this.deps.quota.overage(row.sessionId).catch(() => null) : null;
    if (over && status !== "ABORTED") status = "FAILED";
    if (usage) {
      await this.update(live, {
        modelRequests: usage.requests,
        inputTokens: usage.promptTokens,
        outputTokens: usage.completionTokens,
        costUsd: agent!.cost,
      });
    }
    await this.finish(live, {
      status,
      exitCode: result.exitCode,
      snapshotId: snapshot.id,
      killedBy: result.killedBy ?? (over ? "quota" : null),
      durationMs: result.durationMs,
      cpuMs: result.cpuMs,
      startedAt,
      ...(over ? { error: runQuotaError("after", over) } : {}),
    });
  }

  /** The sandbox goes back to the head the run started from, so nothing the command wrote is kept. */
  private async discardWrites(live: LiveRun, sandbox: BranchSandbox) {
    try {
      await sandbox.provider.reset(sandbox.id, sandbox.files.head);
    } catch (error) {
      // Still never stored: a base that matches no head makes the branch's next work reset first.
      sandbox.setBase(DISCARDED);
      this.deps.log.warn("could not discard a run's writes at once", {
        runId: live.row.id,
        error: String(error),
      });
    }
  }

  private store(live: LiveRun, text: string) {
    if (live.output.length + text.length <= MAX_STORED_OUTPUT) live.output += text;
    else live.truncated = true;
  }

  /** A command: stdout and stderr stream as text chunks. */
  private commandOptions(live: LiveRun): ExecOptions {
    const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    return {
      command: live.row.input,
      onOutput: ({ stream, data }) => {
        const text = decoders[stream].decode(data, { stream: true });
        if (!text) return;
        this.emit(live, { type: "chunk", seq: ++live.seq, stream, text });
        this.store(live, text);
      },
    };
  }

  /** One agent event of a turn: streamed, its text kept as the run's output, its cost counted. */
  private agentEvent(live: LiveRun, agent: AgentTurnState, event: AgentEvent) {
    if (event.type === "text.delta") this.store(live, event.delta);
    if (event.type === "step.finished") agent.cost += event.cost ?? 0;
    if (event.type === "done") agent.done = true;
    this.emitAgent(live, event);
  }

  /**
   * An agent turn on the branch's live opencode server (agent/live: started, or started again, when
   * the branch has none), with a command's limits: the wall-clock limit and the write cap abort the
   * turn (not the server), as does an abort of the run.
   */
  private async liveTurn(
    live: LiveRun,
    sandbox: BranchSandbox,
    pool: AgentPool,
    upstream: Upstream,
    agent: AgentTurnState,
    maxWriteBytes: number,
  ): Promise<{ result: ExecResult; usage: Usage | null }> {
    const { row } = live;
    const started = performance.now();
    const stop = new AbortController();
    let killedBy: KillReason | null = null;
    const kill = (reason: KillReason) => {
      killedBy ??= reason;
      stop.abort();
    };
    const onAbort = () => kill("abort");
    live.controller.signal.addEventListener("abort", onAbort, { once: true });
    if (live.controller.signal.aborted) onAbort();
    const timer = setTimeout(() => kill("timeout"), row.timeoutMs ?? this.deps.turnTimeoutMs ?? 600_000);
    const writes = sandbox.provider.watchWrites?.(sandbox.id, maxWriteBytes, () => kill("disk"));
    let turn: TurnResult | null = null;
    try {
      turn = await pool.turn(
        row.branchId,
        sandbox,
        live.forward?.request ?? { kind: "prompt", text: row.input },
        {
          runId: row.id,
          upstream,
          // The session's mode as of this turn, attached clients' turns too: ASK makes the agent wait
          // for answerPermission.
          permission: permissionRules(await this.agentPermissionsOf(row.sessionId)),
          signal: stop.signal,
          onEvent: (event) => this.agentEvent(live, agent, event),
          onAnswer: (answer) => live.forward?.onAnswer(answer),
        },
      );
    } catch (error) {
      // The server could not be started or reached: the run fails with the reason, as a turn would.
      this.deps.log.warn("live agent turn failed", { runId: row.id, error: String(error) });
      this.agentEvent(live, agent, {
        type: "error",
        message: `The agent could not run this turn: ${(error as Error).message ?? error}`.slice(0, 2000),
      });
    } finally {
      clearTimeout(timer);
      live.controller.signal.removeEventListener("abort", onAbort);
      if ((await writes?.stop())?.over) killedBy = "disk";
      live.forward?.onAnswer(turn?.answer ?? null);
    }
    agent.done = turn?.done ?? false;
    return {
      result: {
        exitCode: killedBy ? null : agent.done ? 0 : 1,
        signal: null,
        killedBy,
        durationMs: Math.round(performance.now() - started),
        cpuMs: null,
        outputBytes: 0,
      },
      usage: turn?.usage ?? null,
    };
  }

  private async agentPermissionsOf(sessionId: string) {
    const [session] = await this.deps.db
      .select({ mode: sessions.agentPermissions })
      .from(sessions)
      .where(eq(sessions.id, sessionId));
    return session?.mode ?? "ALLOW";
  }

  /**
   * An agent turn for providers without live agents (contree: its microVMs only dial out):
   * `opencode run --format json` against the gateway's URL; its JSON lines become agent events.
   */
  private agentOptions(live: LiveRun, agent: AgentTurnState): ExecOptions {
    const { gatewayURL } = this.deps;
    if (!gatewayURL)
      throw new AppError(
        "UNAVAILABLE",
        "The agent could not run this turn: the model gateway has no network address its sandbox can reach (MODEL_GATEWAY_URL)",
      );
    const lines = new LineSplitter();
    return {
      ...opencodeRunTurn({ prompt: live.row.input, gatewayURL: `${gatewayURL}/v1`, token: agent.token! }),
      onOutput: ({ stream, data }) => {
        if (stream === "stderr") return; // opencode's own logs are not part of the run's story
        for (const line of lines.push(data)) {
          for (const event of runLineEvents(line)) this.agentEvent(live, agent, event);
        }
      },
    };
  }

  private async finish(
    live: LiveRun,
    end: {
      status: RunStatus;
      exitCode: number | null;
      snapshotId: string | null;
      killedBy: string | null;
      durationMs?: number;
      cpuMs?: number | null;
      startedAt?: Date;
      error?: string;
    },
  ) {
    const { row } = live;
    // Ended from this moment: a queued run that was aborted will not start.
    live.ended = true;
    // The whole trail, the end included, is committed before the row says the run ended and before
    // anyone sees the end: whoever reads either can replay it all from the database.
    const last: RunStreamEvent = {
      type: "end",
      seq: ++live.seq,
      status: end.status,
      exitCode: end.exitCode,
      snapshotId: end.snapshotId,
    };
    live.trail.record(last);
    await live.trail.flush();
    await this.update(live, {
      status: end.status,
      exitCode: end.exitCode,
      snapshotId: end.snapshotId,
      killedBy: end.killedBy,
      durationMs: end.durationMs ?? null,
      cpuMs: end.cpuMs ?? null,
      output: live.output,
      outputTruncated: live.truncated,
      finishedAt: new Date(),
      ...(end.error ? { error: end.error } : {}),
    });
    this.publish(live, last);
    live.markFinished();
    if (row.kind === "PROMPT" && live.output && this.deps.chat) {
      await this.deps.chat
        .append(row.sessionId, {
          author: { kind: "agent", id: null, name: "opencode" },
          text: live.output,
          at: new Date().toISOString(),
          runId: row.id,
        })
        .catch((error) =>
          this.deps.log.warn("could not record the answer in the chat", { error: String(error) }),
        );
    }
    await publishSessionEvent(this.deps, {
      kind: "RUN_FINISHED",
      sessionId: row.sessionId,
      branchId: row.branchId,
      runId: row.id,
    });
    // Late subscribers read the database from here on; keep the replay a little for those in flight.
    setTimeout(() => this.live.delete(row.id), 30_000).unref?.();
  }

  private async fail(live: LiveRun, error: unknown) {
    this.deps.log.error("run failed", {
      runId: live.row.id,
      error: String(error),
      stack: (error as Error)?.stack,
    });
    if (live.ended) return;
    await this.finish(live, {
      status: "FAILED",
      exitCode: null,
      snapshotId: null,
      killedBy: null,
      // A typed error says what happened (the head moved under the run, the branch moved away).
      error: error instanceof AppError ? error.message : "The sandbox failed while running this command",
    }).catch(() => {});
  }

  /** Aborts everything live (shutdown); their rows become INTERRUPTED at the next start if they do not finish. */
  abortAll(): void {
    if (this.abortCheck) clearInterval(this.abortCheck);
    this.abortCheck = null;
    for (const live of this.live.values()) if (!live.ended) live.controller.abort();
  }
}

/**
 * What other instances ask of this one as a branch's owner (cluster/routes.ts serves them, signed):
 * execute a run they recorded, abort it, answer its agent's ask; hold the branch's queue for an item
 * of theirs and work on the held sandbox; read the live workspace; drop a deleted branch.
 */
export function ownerOperations(runtime: BranchRuntime, runner: Runner): OwnerOps {
  const inHold = (op: string) => (body: { holdId: string }) => runtime.holdCall(body.holdId, op, body);
  return {
    "run.start": (b) => runner.adoptQueued(b.runId, b.upstream ?? null),
    "run.abort": async (b) => runner.abort(b.runId),
    "run.answer": (b) =>
      runner.answerPermission(b.runId, b.permissionId, {
        reply: b.reply,
        message: b.message,
        userId: b.userId,
      }),
    "hold.open": (b) => runtime.openHold(b.branchId),
    "hold.read": inHold("read"),
    "hold.list": inHold("list"),
    "hold.write": inHold("write"),
    "hold.snapshot": inHold("snapshot"),
    "hold.reset": inHold("reset"),
    "hold.close": inHold("close"),
    "live.read": (b) => runtime.readLive(b.branchId, b.path, b.maxBytes),
    "live.list": (b) => runtime.listLive(b.branchId, b.dir, b.page),
    "branch.drop": async (b) => {
      runner.abortBranch(b.branchId);
      await runtime.drop(b.branchId);
    },
  };
}
