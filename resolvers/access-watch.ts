// Live subscriptions keep the access they started with only as long as the viewer keeps it. Every
// subscription gets a LiveSubscription (ctx.access); requireRole records each session role it checks,
// and from then on the subscription ends with a typed error when
//   - the viewer's role there is lost or lowered below the need (removal, role change): NOT_FOUND or
//     FORBIDDEN, rechecked on the session's MEMBER_CHANGED events and on accessRevoked;
//   - the session is deleted: NOT_FOUND (after a short grace, so streams that end by themselves on
//     SESSION_DELETED, like sessionEvents, deliver that event first);
//   - the credential dies (API key revoked, signed out everywhere, token expired): UNAUTHENTICATED.
// While a recheck is under way, values wait: nothing published after a removal reaches the removed.
import { and, eq } from "drizzle-orm";
import type { Bus, SubscribeOptions } from "../bus/bus.ts";
import { topics } from "../bus/bus.ts";
import type { Db } from "../db/client.ts";
import { members, type Role } from "../db/schema.ts";
import { atLeast } from "./access.ts";
import type { LiveAccess, Logger, Viewer } from "./context.ts";
import { CredentialWatch } from "./credential-watch.ts";
import { AppError } from "./errors.ts";
import type { SessionEventPayload } from "./events.ts";

/** How long a subscription on a deleted session may still deliver before it ends. */
const DELETED_GRACE_MS = 1000;

export class LiveSubscription implements LiveAccess {
  /** Aborted when the subscription ends, for any reason: its bus subscriptions end with it. */
  readonly signal: AbortSignal;
  lostError: AppError | null = null;
  /** The strongest role needed per session. */
  readonly needs = new Map<string, Role>();
  private readonly controller = new AbortController();
  /** The one pending whenLost() (a single slot, so a long stream does not pile up reactions). */
  private waiter: ((error: AppError) => void) | undefined;
  private rechecks = 0;
  private idle: (() => void)[] = [];
  private deletedTimer: ReturnType<typeof setTimeout> | undefined;
  private stopCredentialWatch: () => void = () => {};

  constructor(
    private readonly hub: AccessWatchHub,
    readonly viewer: Viewer | null,
    /** Called when a role was rechecked, so per-operation caches (the role loader) forget it. */
    readonly onRoleChanged: (sessionId: string) => void,
  ) {
    this.signal = this.controller.signal;
  }

  /** Resolves with the reason once access is lost; each call replaces the previous wait. */
  whenLost(): Promise<AppError> {
    if (this.lostError) return Promise.resolve(this.lostError);
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  need(sessionId: string, role: Role): void {
    if (this.signal.aborted) return;
    const had = this.needs.get(sessionId);
    if (had && atLeast(had, role)) return;
    this.needs.set(sessionId, role);
    if (!had) this.hub.watchSession(sessionId, this);
  }

  /** Resolves when no recheck is under way. */
  settled(): Promise<void> {
    if (this.rechecks === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  lose(error: AppError): void {
    if (this.lostError || this.signal.aborted) return;
    this.lostError = error;
    this.waiter?.(error);
    this.waiter = undefined;
  }

  loseSoon(error: AppError, ms: number): void {
    if (this.deletedTimer || this.signal.aborted) return;
    this.deletedTimer = setTimeout(() => this.lose(error), ms);
  }

  async recheck(sessionId: string): Promise<void> {
    const need = this.needs.get(sessionId);
    if (!need || !this.viewer || this.signal.aborted) return;
    this.rechecks++;
    try {
      const role = await this.hub.roleOf(sessionId, this.viewer.userId);
      this.onRoleChanged(sessionId);
      if (role === null) this.lose(new AppError("NOT_FOUND", "Session not found: your access to it ended"));
      else if (!atLeast(role, need))
        this.lose(
          new AppError("FORBIDDEN", `This needs the ${need} role in the session; you are now ${role}`),
        );
    } catch (error) {
      // Unknown is not allowed: a subscription whose access cannot be confirmed ends (it may resubscribe).
      this.hub.log.warn("access recheck failed", { sessionId, error: String(error) });
      this.lose(
        new AppError("UNAVAILABLE", "Could not confirm your access to this session; subscribe again"),
      );
    } finally {
      if (--this.rechecks === 0) for (const resolve of this.idle.splice(0)) resolve();
    }
  }

  /** Starts watching the credential (the hub calls it once). */
  watchCredential(credentials: CredentialWatch) {
    if (this.viewer) this.stopCredentialWatch = credentials.watch(this.viewer, (error) => this.lose(error));
  }

  /** Releases everything the watch holds; idempotent. */
  end(): void {
    if (this.signal.aborted) return;
    this.controller.abort();
    this.waiter = undefined;
    if (this.deletedTimer) clearTimeout(this.deletedTimer);
    this.stopCredentialWatch();
    for (const sessionId of this.needs.keys()) this.hub.unwatchSession(sessionId, this);
    for (const resolve of this.idle.splice(0)) resolve();
  }
}

/** One per server: the bus feeds every live subscription's watch. */
export class AccessWatchHub {
  private readonly credentials: CredentialWatch;
  private readonly byUser = new Map<string, Set<LiveSubscription>>();
  private readonly sessions = new Map<
    string,
    { subscriptions: Set<LiveSubscription>; events: AsyncIterableIterator<unknown> }
  >();
  private readonly removals: AsyncIterableIterator<unknown>;

  constructor(private readonly deps: { db: Db; bus: Bus; log: Logger }) {
    this.credentials = new CredentialWatch(deps.bus, deps.log);
    const removals = deps.bus.subscribe<{ sessionId: string; userId: string }>(topics.accessRevoked);
    this.removals = removals;
    void (async () => {
      for await (const { payload } of removals)
        for (const live of this.byUser.get(payload.userId) ?? [])
          if (live.needs.has(payload.sessionId)) void live.recheck(payload.sessionId);
    })().catch((error) => deps.log.error("access watch stopped", { error: String(error) }));
  }

  get log(): Logger {
    return this.deps.log;
  }

  /** A watch for one subscription; call `end()` when the subscription ends. */
  open(viewer: Viewer | null, onRoleChanged: (sessionId: string) => void = () => {}): LiveSubscription {
    const live = new LiveSubscription(this, viewer, onRoleChanged);
    live.watchCredential(this.credentials);
    if (viewer) {
      const set = this.byUser.get(viewer.userId) ?? new Set();
      this.byUser.set(viewer.userId, set);
      set.add(live);
      live.signal.addEventListener("abort", () => {
        set.delete(live);
        if (set.size === 0 && this.byUser.get(viewer.userId) === set) this.byUser.delete(viewer.userId);
      });
    }
    return live;
  }

  async roleOf(sessionId: string, userId: string): Promise<Role | null> {
    const [member] = await this.deps.db
      .select({ role: members.role })
      .from(members)
      .where(and(eq(members.sessionId, sessionId), eq(members.userId, userId)));
    return member?.role ?? null;
  }

  /** Session events are shared by every subscription watching the session (one bus subscription). */
  watchSession(sessionId: string, live: LiveSubscription) {
    const watched = this.sessions.get(sessionId);
    if (watched) return void watched.subscriptions.add(live);
    const events = this.deps.bus.subscribe<SessionEventPayload>(topics.session(sessionId));
    const subscriptions = new Set([live]);
    this.sessions.set(sessionId, { subscriptions, events });
    void (async () => {
      for await (const { payload } of events) {
        if (payload.kind === "SESSION_DELETED") {
          for (const each of subscriptions)
            each.loseSoon(new AppError("NOT_FOUND", "Session not found: it was deleted"), DELETED_GRACE_MS);
        } else if (payload.kind === "MEMBER_CHANGED" && payload.userId) {
          for (const each of subscriptions)
            if (each.viewer?.userId === payload.userId) void each.recheck(sessionId);
        }
      }
    })().catch((error) => this.deps.log.error("session access watch stopped", { error: String(error) }));
  }

  unwatchSession(sessionId: string, live: LiveSubscription) {
    const watched = this.sessions.get(sessionId);
    if (!watched?.subscriptions.delete(live) || watched.subscriptions.size > 0) return;
    this.sessions.delete(sessionId);
    void watched.events.return?.();
  }

  /** Subscriptions being watched now (tests check that nothing leaks). */
  get watching(): number {
    let count = 0;
    for (const set of this.byUser.values()) count += set.size;
    return count;
  }

  async close(): Promise<void> {
    await this.removals.return?.();
    await this.credentials.close();
    for (const { events } of this.sessions.values()) await events.return?.();
    this.sessions.clear();
  }
}

/** The bus as one subscription sees it: everything it subscribes to ends when `signal` aborts. */
export function busUntil(bus: Bus, signal: AbortSignal): Bus {
  return {
    publish: (topic, payload) => bus.publish(topic, payload),
    subscribe: <T>(topic: string, options: SubscribeOptions = {}) =>
      bus.subscribe<T>(topic, {
        ...options,
        signal: options.signal ? AbortSignal.any([options.signal, signal]) : signal,
      }),
    lastId: (topic) => bus.lastId(topic),
    close: () => bus.close(),
  };
}

/**
 * The source's values until access is lost, then `last(error)` (the typed error as a final value)
 * and the end. A value that arrives while a recheck is under way waits for it, and is dropped if
 * access was lost. Ending either way (lost, done, return()) ends the watch.
 */
export function untilAccessLost<T>(
  source: AsyncIterator<T>,
  live: LiveSubscription,
  last: (error: AppError) => T,
): AsyncIterableIterator<T> {
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    live.end(); // the source's bus subscriptions end, so its pending next() settles and return() runs
    void Promise.resolve(source.return?.()).catch(() => {});
  };
  const lostNow = (error: AppError): IteratorResult<T> => {
    finish();
    return { done: false, value: last(error) };
  };
  const iterator: AsyncIterableIterator<T> = {
    async next() {
      if (finished) return { done: true, value: undefined };
      if (live.lostError) return lostNow(live.lostError);
      const pending = source.next();
      let outcome: { result: IteratorResult<T> } | { error: AppError };
      try {
        outcome = await Promise.race([
          pending.then((result) => ({ result })),
          live.whenLost().then((error) => ({ error })),
        ]);
      } catch (error) {
        finish();
        throw error;
      }
      if ("error" in outcome) {
        pending.catch(() => {});
        return lostNow(outcome.error);
      }
      if (outcome.result.done) {
        finish();
        return outcome.result;
      }
      await live.settled();
      if (live.lostError) return lostNow(live.lostError);
      return outcome.result;
    },
    async return(value?: unknown) {
      finish();
      return { done: true, value: value as T };
    },
    async throw(error?: unknown) {
      finish();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
