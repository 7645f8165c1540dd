// Run quotas, beside the storage quotas of quota.ts: how many runs one user may have queued or running
// at once, and how many seconds of runs a user may use per UTC day, both counted over every instance
// (RunCounters: in memory for one process, in Redis/Upstash for several). A run takes a slot where it
// starts (exec, prompt, attached turns, an exploration's turns and score runs) and gives it back when
// it ends. Slots are leases the starting instance renews while the run lives, so the runs of a killed
// instance stop counting within LEASE_MS. A run's seconds are added when it ends, and a run may last at
// most what is left of the day. Both refusals are QUOTA_EXCEEDED with `retryAfterSeconds`. Work that
// starts many runs on its own (an exploration) may instead wait for a slot (beginWhenFree).
import type { RunRow } from "../db/schema.ts";
import type { Logger } from "./context.ts";
import { AppError, quotaExceeded } from "./errors.ts";
import type { Runner } from "./runner.ts";

/** Shared counters the quotas are kept in (api/run-counters.ts implements them). */
export interface RunCounters {
  /** Adds `member` to the leases at `key` if fewer than `limit` unexpired ones are held there. */
  acquire(
    key: string,
    member: string,
    limit: number,
    leaseMs: number,
  ): Promise<{ ok: boolean; held: number }>;
  /** Extends the leases of these members (those still held). */
  renew(key: string, members: string[], leaseMs: number): Promise<void>;
  release(key: string, member: string): Promise<void>;
  /** Adds to a counter that expires `ttlMs` after it was created; returns the new value. */
  add(key: string, amount: number, ttlMs: number): Promise<number>;
  get(key: string): Promise<number>;
}

export interface RunQuotaLimits {
  userConcurrentRuns: number;
  userRunSecondsPerDay: number;
  /** The longest run allowed at all (SANDBOX_TIMEOUT_MS): a run without a timeout may last this long. */
  maxRunTimeoutMs: number;
}

/** What a started run holds: its slot, and the timeout it may have. */
export interface RunTicket {
  /** The caller's timeout, or a shorter one when less than that is left of today's run-seconds. */
  timeoutMs: number | null;
  /** The run ended after running `durationMs`: its seconds are counted and its slot given back. */
  finish(durationMs: number): void;
  /** The run never started: the slot is given back. */
  cancel(): void;
}

const LEASE_MS = 60_000;
const DAY_MS = 24 * 3600_000;
/** A waiter for a slot asks again this often at first, then less often (runs on other instances). */
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 5_000;

/** Seconds until the next UTC midnight (when the day's run-seconds start again). */
export const secondsUntilUtcMidnight = (now = Date.now()) =>
  Math.max(1, Math.ceil((DAY_MS - (now % DAY_MS)) / 1000));

export class RunQuotas {
  /** Slot key -> members held by runs on this instance (renewed together). */
  private readonly held = new Map<string, Set<string>>();
  /** userId -> callers of beginWhenFree waiting for a slot, oldest first; woken as this instance's runs end. */
  private readonly waiters = new Map<string, (() => void)[]>();
  private closed = false;
  private readonly renewer: ReturnType<typeof setInterval>;

  constructor(
    private readonly counters: RunCounters,
    private readonly limits: RunQuotaLimits,
    private readonly log?: Logger,
  ) {
    this.renewer = setInterval(() => void this.renew(), LEASE_MS / 3);
    (this.renewer as { unref?: () => void }).unref?.();
  }

  private slotKey = (userId: string) => `quota:runs:${userId}`;
  private dayKey = (userId: string, now = Date.now()) =>
    `quota:run-seconds:${userId}:${new Date(now).toISOString().slice(0, 10)}`;

  /** Seconds of runs the user used today (UTC), over all instances. */
  runSecondsToday(userId: string): Promise<number> {
    return this.counters.get(this.dayKey(userId));
  }

  /** Checks both quotas and takes a slot for a run about to start; QUOTA_EXCEEDED when one is used up. */
  async begin(userId: string, requestedTimeoutMs: number | null): Promise<RunTicket> {
    const { userConcurrentRuns, userRunSecondsPerDay, maxRunTimeoutMs } = this.limits;
    const dayKey = this.dayKey(userId);
    const used = await this.counters.get(dayKey);
    if (used >= userRunSecondsPerDay) {
      const retryAfterSeconds = secondsUntilUtcMidnight();
      throw quotaExceeded(
        `You have used your ${userRunSecondsPerDay} run-seconds for today (UTC); they renew in ${retryAfterSeconds} s`,
        { scope: "runSeconds", limit: userRunSecondsPerDay, used, retryAfterSeconds },
      );
    }
    const slotKey = this.slotKey(userId);
    const member = crypto.randomUUID();
    const slot = await this.counters.acquire(slotKey, member, userConcurrentRuns, LEASE_MS);
    if (!slot.ok) {
      throw quotaExceeded(
        `You have ${userConcurrentRuns} runs queued or running, the most allowed at once; retry when one ends`,
        { scope: "concurrentRuns", limit: userConcurrentRuns, used: slot.held, retryAfterSeconds: 5 },
      );
    }
    const members = this.held.get(slotKey) ?? new Set<string>();
    this.held.set(slotKey, members);
    members.add(member);

    const leftMs = (userRunSecondsPerDay - used) * 1000;
    const timeoutMs =
      leftMs < (requestedTimeoutMs ?? maxRunTimeoutMs) ? Math.max(1000, leftMs) : requestedTimeoutMs;
    let done = false;
    const release = () => {
      if (done) return false;
      done = true;
      members.delete(member);
      if (members.size === 0 && this.held.get(slotKey) === members) this.held.delete(slotKey);
      void this.counters
        .release(slotKey, member)
        .catch((error) => this.log?.warn("could not release a run slot", { error: String(error) }))
        .finally(() => this.wakeOne(userId));
      return true;
    };
    return {
      timeoutMs,
      cancel: () => void release(),
      finish: (durationMs) => {
        if (!release()) return;
        const seconds = Math.ceil(Math.max(0, durationMs) / 1000);
        if (seconds === 0) return;
        // Kept two days, so "today" outlives the UTC midnight it was counted before.
        void this.counters
          .add(dayKey, seconds, 2 * DAY_MS)
          .catch((error) => this.log?.warn("could not count run-seconds", { error: String(error) }));
      },
    };
  }

  /**
   * Like `begin`, but when the user's runs at once are at their limit it waits for a slot instead of
   * refusing: woken (oldest waiter first) as soon as a run of the user ends on this instance, and
   * asking again every few seconds for runs ending elsewhere. A slot must come free within the longest
   * run plus a lease (`maxWaitMs`) unless the user keeps starting others; past that, the refusal is
   * thrown. A used-up day is refused at once (waiting would not help), and so is a shutdown
   * (UNAVAILABLE).
   */
  async beginWhenFree(
    userId: string,
    requestedTimeoutMs: number | null,
    maxWaitMs = this.limits.maxRunTimeoutMs + LEASE_MS,
  ): Promise<RunTicket> {
    const deadline = Date.now() + maxWaitMs;
    let retryMs = FIRST_RETRY_MS;
    for (;;) {
      if (this.closed) throw new AppError("UNAVAILABLE", "Server is shutting down", { retryAfterSeconds: 1 });
      try {
        return await this.begin(userId, requestedTimeoutMs);
      } catch (error) {
        const full = error instanceof AppError && error.details?.scope === "concurrentRuns";
        if (!full || Date.now() + retryMs > deadline) throw error;
      }
      await this.waitForSlot(userId, retryMs);
      retryMs = Math.min(MAX_RETRY_MS, retryMs * 2);
    }
  }

  /** Resolves when a run of the user ends here (or on close), or after `ms` at most. */
  private waitForSlot(userId: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const queue = this.waiters.get(userId) ?? [];
      this.waiters.set(userId, queue);
      const wake = () => {
        clearTimeout(timer);
        const at = queue.indexOf(wake);
        if (at >= 0) queue.splice(at, 1);
        if (queue.length === 0 && this.waiters.get(userId) === queue) this.waiters.delete(userId);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      queue.push(wake);
    });
  }

  private wakeOne(userId: string) {
    this.waiters.get(userId)?.[0]?.();
  }

  private async renew() {
    for (const [key, members] of this.held)
      await this.counters
        .renew(key, [...members], LEASE_MS)
        .catch((error) => this.log?.warn("could not renew run slots", { error: String(error) }));
  }

  close(): void {
    this.closed = true;
    clearInterval(this.renewer);
    for (const queue of [...this.waiters.values()]) for (const wake of [...queue]) wake();
  }
}

/**
 * Starts a run on the ticket's terms (its timeout): the slot is given back and the seconds counted
 * when the run ends, or at once if it never starts.
 */
export async function startCounted(
  runner: Pick<Runner, "start" | "wait">,
  ticket: RunTicket,
  input: Parameters<Runner["start"]>[0],
): Promise<RunRow> {
  let run: RunRow;
  try {
    run = await runner.start({ ...input, timeoutMs: ticket.timeoutMs });
  } catch (error) {
    ticket.cancel();
    throw error;
  }
  void runner.wait(run.id).then(
    (row) =>
      ticket.finish(row.startedAt && row.finishedAt ? row.finishedAt.getTime() - row.startedAt.getTime() : 0),
    () => ticket.cancel(),
  );
  return run;
}
