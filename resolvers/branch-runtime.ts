// Live sandboxes for branches. A branch's live sandbox belongs to one instance at a time (the owner,
// holding the branch's lease: cluster/ownership.ts); with one instance every branch is here. On the
// owner, a branch's sandbox is created from its head on first use (also after a restart, or when it
// takes over from an owner that died) and reset whenever the head moved without it (a rollback). Work
// on one branch runs one item at a time; runs on different branches run in parallel up to a limit.
// Work queued on an instance that is not the owner holds the owner's queue for its item (a "hold")
// and reaches the owner's sandbox through a provider whose sandbox calls go to the owner.
// A live sandbox is not kept forever: one with no queued work (no run, write, hold or agent turn:
// all are queue items) for `idleMs` is dropped, its lease released, and the next work creates it
// again from the head; at most `maxLive` are kept, the least recently used idle one going first.
// What a sandbox holds beyond its head is in the collab update log (file-room edits, written again
// into a new sandbox by the before hook) or kept by the `beforeDrop` guard (resolvers/idle-drop.ts).
import { randomBytes } from "node:crypto";
import type { Ownership } from "../cluster/ownership.ts";
import { type Peer, PeerError } from "../cluster/peer-client.ts";
import {
  type FileEntry,
  type FileSource,
  FileTooLargeError,
  type ListPage,
  type ReadOptions,
  SandboxError,
  type SandboxProvider,
  type SnapshotInfo,
} from "../sandbox/provider.ts";
import type { SandboxProviders } from "../sandbox/registry.ts";
import { AppError, type ErrorCode } from "./errors.ts";

interface LiveBranch {
  sandboxId: string;
  /** The provider snapshot the sandbox currently shows (its last freeze or reset). */
  base: string;
  provider: SandboxProvider;
  /** When its last queued item ended (or it was made): the idle drop and the cap's LRU order. */
  lastUsed: number;
}

/** A branch's head as the provider knows it: which provider, which of its snapshots. */
export interface BranchHead {
  provider: string;
  ref: string;
}

/** A counting semaphore: at most `limit` holders at once, first come first served. */
class Slots {
  private used = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async acquire(): Promise<() => void> {
    if (this.used >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.used++;
    return () => {
      const next = this.waiting.shift();
      if (next) next();
      else this.used--;
    };
  }
}

/**
 * Work around every queued item of a branch: the collaboration server writes the branch's open file
 * buffers into the sandbox before (so commands see what people typed) and reads changed files back
 * after (so open editors see what a run wrote).
 */
export interface BranchWorkHooks {
  before(branchId: string, files: SandboxFiles): Promise<void>;
  after(branchId: string, files: SandboxFiles): Promise<void>;
}

/** Reading and writing one live sandbox's files (without recording a snapshot). */
export interface SandboxFiles {
  /** The live sandbox (a new one after a restart: live workspaces do not outlive the process). */
  readonly sandboxId: string;
  /** The provider snapshot the sandbox was last reset to or frozen as. */
  readonly head: string;
  read(path: string, options?: ReadOptions): Promise<Uint8Array | null>;
  write(path: string, data: Uint8Array): Promise<void>;
}

export interface BranchSandbox {
  id: string;
  provider: SandboxProvider;
  files: SandboxFiles;
  /** Records that the sandbox now shows this provider snapshot (after freezing it). */
  setBase(base: string): void;
}

/** How long a hold may wait for its turn in the owner's queue (behind runs) before it gives up. */
const HOLD_WAIT_MS = 30 * 60_000;
/** A hold nobody calls for this long is let go (its holder died): the owner's queue moves on. */
const HOLD_IDLE_MS = 60_000;
/** Calls in a hold and reads of a live workspace elsewhere. */
const OWNER_CALL_MS = 60_000;

export interface BranchRuntimeOptions {
  /** Who owns which branch (cluster/); absent: one instance, everything here. */
  ownership?: Ownership;
  /** The branch's head as the database says (what a hold or a fallback read starts from). */
  headOf?: (branchId: string) => Promise<BranchHead>;
  log?: { warn(message: string, fields?: Record<string, unknown>): void };
  /** A live sandbox with no queued work for this long is dropped and its lease released (0: never). */
  idleMs?: number;
  /** Live sandboxes kept here at most: making one more drops the least recently used idle one. */
  maxLive?: number;
}

/**
 * Asked, inside the branch's queue, before an idle sandbox is dropped: stops what runs in it and
 * keeps what would be lost; false keeps the sandbox (something still uses it).
 */
export type BeforeDrop = (branchId: string, sandbox: BranchSandbox) => Promise<boolean>;

/** What an owner hands a hold's holder: the sandbox, and the snapshot it shows now. */
export interface HoldGrant {
  holdId: string;
  sandboxId: string;
  base: string;
}

interface Hold {
  branchId: string;
  live: LiveBranch;
  setBase(base: string): void;
  release(): void;
  touched: number;
}

/** A peer's failure as this side's typed error: what the owner said, or UNAVAILABLE when it did not answer. */
export function fromPeer(error: unknown): unknown {
  if (!(error instanceof PeerError)) return error;
  if (error.kind === "sandbox") {
    const d = error.details as { path?: string; size?: number; maxBytes?: number } | undefined;
    if (
      error.code === "TOO_LARGE" &&
      d?.path !== undefined &&
      d.size !== undefined &&
      d.maxBytes !== undefined
    )
      return new FileTooLargeError(d.path, d.size, d.maxBytes);
    return new SandboxError(error.code as SandboxError["code"], error.message);
  }
  if (error.kind === "app") return new AppError(error.code as ErrorCode, error.message, error.details);
  return new AppError("UNAVAILABLE", "The instance that holds this branch could not be reached; try again", {
    retryable: true,
  });
}

const b64 = (data: Uint8Array) => Buffer.from(data).toString("base64");
const unb64 = (text: string) => new Uint8Array(Buffer.from(text, "base64"));
const reviveInfo = (info: SnapshotInfo): SnapshotInfo => ({ ...info, createdAt: new Date(info.createdAt) });

export class BranchRuntime {
  private readonly live = new Map<string, LiveBranch>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly slots: Slots;
  private hooks: BranchWorkHooks | null = null;
  /** Branches dropped here (deleted): late work for them (a buffer's timer) must not revive them. */
  private readonly dropped = new Set<string>();
  private readonly holds = new Map<string, Hold>();
  private readonly ownership: Ownership | null;
  private beforeDrop: BeforeDrop | null = null;
  /** Sandboxes being made now (counted against the cap before they are live). */
  private creating = 0;
  /** Leases held here with no live sandbox and no work (a start that failed), since when. */
  private readonly orphans = new Map<string, number>();
  private readonly sweeper: ReturnType<typeof setInterval> | null = null;
  private sweeping = false;

  constructor(
    private readonly providers: SandboxProviders,
    maxParallelRuns: number,
    private readonly options: BranchRuntimeOptions = {},
  ) {
    this.slots = new Slots(maxParallelRuns);
    this.ownership = options.ownership?.forwards ? options.ownership : null;
    // Another instance took the branch over (this one was paused past its lease): its sandbox here is
    // stale; it goes once the work in progress has noticed (runs check the lease before recording).
    this.ownership?.onLost((branchId) => void this.forget(branchId));
    const idleMs = options.idleMs ?? 0;
    if (idleMs > 0) {
      this.sweeper = setInterval(() => void this.sweepIdle(), Math.min(30_000, Math.max(50, idleMs / 4)));
      this.sweeper.unref?.();
    }
  }

  setBeforeDrop(guard: BeforeDrop): void {
    this.beforeDrop = guard;
  }

  /** How many branches have a live sandbox here now. */
  get liveCount(): number {
    return this.live.size;
  }

  /** Live sandboxes on this instance by provider name (metrics read it at scrape time). */
  liveByProvider(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const { provider } of this.live.values())
      counts.set(provider.status.name, (counts.get(provider.status.name) ?? 0) + 1);
    return counts;
  }

  /** Where the branch's live sandbox is: here (this instance holds, or now took, its lease) or elsewhere. */
  async locate(branchId: string): Promise<{ here: true } | { here: false; peer: Peer }> {
    if (!this.ownership) return { here: true };
    try {
      return await this.ownership.locate(branchId);
    } catch (error) {
      throw new AppError("UNAVAILABLE", `Could not find the branch's owner: ${(error as Error).message}`, {
        retryable: true,
      });
    }
  }

  /** Whether this instance still holds the branch (fencing: checked before a run records its snapshot). */
  async stillOwns(branchId: string): Promise<boolean> {
    if (!this.ownership) return true;
    return this.ownership.holds(branchId).catch(() => false);
  }

  /**
   * Runs `work` after every earlier item queued on the branch, with the branch's live sandbox showing
   * its head (read by `headOf` when the item starts). With `slot`, it also waits for one of the
   * parallel run slots. On an instance that is not the owner, the item holds the owner's queue and
   * works on the owner's sandbox; with `ownerOnly` (work that must run here, such as a run's
   * command) it fails with UNAVAILABLE instead.
   */
  enqueue<T>(
    branchId: string,
    headOf: () => Promise<BranchHead>,
    work: (sandbox: BranchSandbox) => Promise<T>,
    options: { slot?: boolean; ownerOnly?: boolean } = {},
  ): Promise<T> {
    if (this.dropped.has(branchId))
      return Promise.reject(new SandboxError("NOT_FOUND", "The branch was deleted"));
    const previous = this.queues.get(branchId) ?? Promise.resolve();
    const result = previous.then(async () => {
      if (this.dropped.has(branchId)) throw new SandboxError("NOT_FOUND", "The branch was deleted");
      // Before every item: is the lease (still) ours? A paused old owner finds out here.
      const where = await this.locate(branchId);
      if (!where.here) {
        if (options.ownerOnly)
          throw new AppError("UNAVAILABLE", "Another instance took this branch over; try again", {
            retryable: true,
          });
        return this.remoteItem(where.peer, branchId, headOf, work);
      }
      const release = options.slot ? await this.slots.acquire() : () => {};
      try {
        // Before a reset (a rollback), so the reset is what open buffers see afterwards.
        const current = this.live.get(branchId);
        if (current) await this.hooks?.before(branchId, this.filesOf(current));
        const live = await this.sandboxAt(branchId, await headOf());
        // A sandbox created just now (a restart, a takeover): edits stored meanwhile reach it before the work.
        if (!current) await this.hooks?.before(branchId, this.filesOf(live));
        try {
          return await work({
            id: live.sandboxId,
            provider: live.provider,
            files: this.filesOf(live),
            setBase: (base) => {
              live.base = base;
            },
          });
        } finally {
          if (this.live.get(branchId) === live) await this.hooks?.after(branchId, this.filesOf(live));
        }
      } finally {
        release();
      }
    });
    this.chain(branchId, result);
    return result;
  }

  /** Makes `item` the branch's last queued one; the queue is forgotten once it drains (idle branches hold nothing). */
  private chain(branchId: string, item: Promise<unknown>): void {
    const settled = item.then(
      () => {},
      () => {},
    );
    this.queues.set(branchId, settled);
    void settled.then(() => {
      const live = this.live.get(branchId);
      if (live) live.lastUsed = Date.now();
      if (this.queues.get(branchId) === settled) this.queues.delete(branchId);
    });
  }

  setHooks(hooks: BranchWorkHooks): void {
    this.hooks = hooks;
  }

  private sandboxOfLive(live: LiveBranch): BranchSandbox {
    return {
      id: live.sandboxId,
      provider: live.provider,
      files: this.filesOf(live),
      setBase: (base) => {
        live.base = base;
      },
    };
  }

  private filesOf(live: LiveBranch): SandboxFiles {
    const { provider, sandboxId } = live;
    return {
      sandboxId,
      get head() {
        return live.base;
      },
      read: (path, options) => provider.readFile({ sandbox: sandboxId }, path, options),
      write: (path, data) => provider.writeFile(sandboxId, path, data),
    };
  }

  private async sandboxAt(branchId: string, head: BranchHead): Promise<LiveBranch> {
    const live = this.live.get(branchId);
    if (!live) {
      const provider = this.providers.get(head.provider);
      await this.makeRoom(branchId, 1);
      this.creating++;
      let sandboxId: string;
      try {
        sandboxId = await provider.fork(head.ref);
      } finally {
        this.creating--;
      }
      const created: LiveBranch = { sandboxId, base: head.ref, provider, lastUsed: Date.now() };
      this.live.set(branchId, created);
      return created;
    }
    if (live.base !== head.ref) {
      await live.provider.reset(live.sandboxId, head.ref);
      live.base = head.ref;
    }
    return live;
  }

  // ---- work queued here for a branch another instance owns ----------------------------------------

  /** One item on the owner's sandbox: hold its queue, bring it to the head, work, let go. */
  private async remoteItem<T>(
    peer: Peer,
    branchId: string,
    headOf: () => Promise<BranchHead>,
    work: (sandbox: BranchSandbox) => Promise<T>,
  ): Promise<T> {
    const grant = await this.ownerCall<HoldGrant>(peer, "hold.open", { branchId }, HOLD_WAIT_MS);
    let base = grant.base;
    try {
      const head = await headOf();
      if (head.ref !== base) {
        await this.ownerCall(peer, "hold.reset", { holdId: grant.holdId, ref: head.ref });
        base = head.ref;
      }
      const provider = this.heldProvider(this.providers.get(head.provider), peer, grant.holdId);
      return await work({
        id: grant.sandboxId,
        provider,
        files: {
          sandboxId: grant.sandboxId,
          get head() {
            return base;
          },
          read: (path, options) => provider.readFile({ sandbox: grant.sandboxId }, path, options),
          write: (path, data) => provider.writeFile(grant.sandboxId, path, data),
        },
        setBase: (next) => {
          base = next;
        },
      });
    } finally {
      await this.ownerCall(peer, "hold.close", { holdId: grant.holdId, base }).catch(() => {});
    }
  }

  /**
   * A call to the owner that fails fast when the owner dies: its instance key is checked every lease
   * period while the call waits, and a call to a gone owner ends as UNAVAILABLE (retryable; the next
   * try takes the branch over).
   */
  private async ownerCall<T>(peer: Peer, op: string, body: unknown, timeoutMs = OWNER_CALL_MS): Promise<T> {
    const watch = this.watchOwner(peer);
    try {
      return await peer.call<T>(op, body, { timeoutMs, signal: watch.signal });
    } catch (error) {
      if (error instanceof PeerError && error.kind === "unreachable")
        this.ownership?.forgetHint(String((body as { branchId?: string })?.branchId ?? ""), peer.instanceId);
      throw fromPeer(error);
    } finally {
      watch.stop();
    }
  }

  /** A signal that aborts once the peer is gone (its instance key expired), checked every lease period. */
  watchOwner(peer: Peer): { signal: AbortSignal; stop(): void } {
    const gone = new AbortController();
    const ownership = this.ownership;
    if (!ownership) return { signal: gone.signal, stop() {} };
    const timer = setInterval(() => {
      void ownership.alive(peer.instanceId).then(
        (alive) => alive || gone.abort(),
        () => {},
      );
    }, ownership.leaseMs);
    timer.unref?.();
    return { signal: gone.signal, stop: () => clearInterval(timer) };
  }

  /** The provider as a hold's holder sees it: calls on the held sandbox go to the owner. */
  private heldProvider(real: SandboxProvider, peer: Peer, holdId: string): SandboxProvider {
    const call = <T>(op: string, body: Record<string, unknown>) =>
      this.ownerCall<T>(peer, op, { holdId, ...body });
    const overrides: Partial<SandboxProvider> = {
      startService: undefined,
      watchWrites: undefined,
      exec: () =>
        Promise.reject(new SandboxError("UNAVAILABLE", "Commands run on the instance that owns the branch")),
      snapshot: async () => reviveInfo(await call<SnapshotInfo>("hold.snapshot", {})),
      reset: async (_id, ref) => {
        await call("hold.reset", { ref });
      },
      writeFile: async (_id, path, content, mode) => {
        const data = typeof content === "string" ? new TextEncoder().encode(content) : content;
        await call("hold.write", { path, data: b64(data), mode: mode ?? null });
      },
      readFile: async (source, path, options) => {
        if (!("sandbox" in source)) return real.readFile(source, path, options);
        const data = await call<string | null>("hold.read", { path, maxBytes: options?.maxBytes ?? null });
        return data === null ? null : unb64(data);
      },
      listFiles: (source, dir, page) =>
        "sandbox" in source
          ? call<FileEntry[]>("hold.list", { dir: dir ?? "", page: page ?? null })
          : real.listFiles(source, dir, page),
      destroy: async () => {},
    };
    return withOverrides(real, overrides);
  }

  // ---- the owner's side of holds and live reads (internal cluster operations) -------------------

  /** Queues a hold for another instance; resolves when it is the branch's turn. */
  openHold(branchId: string): Promise<HoldGrant> {
    const headOf = this.options.headOf;
    if (!headOf) return Promise.reject(new SandboxError("UNSUPPORTED", "holds need the branch heads"));
    return new Promise<HoldGrant>((granted, refused) => {
      this.enqueue(
        branchId,
        () => headOf(branchId),
        async (sandbox) => {
          const holdId = `hold-${randomBytes(9).toString("hex")}`;
          const live = this.live.get(branchId)!;
          let release!: () => void;
          const released = new Promise<void>((resolve) => {
            release = resolve;
          });
          const hold: Hold = { branchId, live, setBase: sandbox.setBase, release, touched: Date.now() };
          this.holds.set(holdId, hold);
          const idle = setInterval(() => {
            if (Date.now() - hold.touched > HOLD_IDLE_MS) release();
          }, 5000);
          idle.unref?.();
          granted({ holdId, sandboxId: sandbox.id, base: sandbox.files.head });
          try {
            await released;
          } finally {
            clearInterval(idle);
            this.holds.delete(holdId);
          }
        },
        { ownerOnly: true },
      ).catch(refused);
    });
  }

  private hold(holdId: string): Hold {
    const hold = this.holds.get(holdId);
    if (!hold) throw new SandboxError("NOT_FOUND", "The hold on this branch ended (it was idle too long)");
    hold.touched = Date.now();
    return hold;
  }

  /** One call within a hold, on the held sandbox. */
  // biome-ignore lint/suspicious/noExplicitAny: JSON from a signed peer (cluster/routes.ts)
  async holdCall(holdId: string, op: string, body: Record<string, any>): Promise<unknown> {
    const hold = this.hold(holdId);
    const { provider, sandboxId } = hold.live;
    switch (op) {
      case "read": {
        const data = await provider.readFile(
          { sandbox: sandboxId },
          body.path,
          body.maxBytes === null ? {} : { maxBytes: body.maxBytes },
        );
        return data === null ? null : b64(data);
      }
      case "list":
        return provider.listFiles({ sandbox: sandboxId }, body.dir, body.page ?? undefined);
      case "write":
        return provider.writeFile(sandboxId, body.path, unb64(body.data), body.mode ?? undefined);
      case "snapshot":
        return provider.snapshot(sandboxId);
      case "reset":
        await provider.reset(sandboxId, body.ref);
        hold.setBase(body.ref);
        return null;
      case "close":
        if (typeof body.base === "string") hold.setBase(body.base);
        hold.release();
        return null;
      default:
        throw new SandboxError("UNSUPPORTED", `No hold operation ${op}`);
    }
  }

  /** A file of the branch's live sandbox here now (another instance reads the live workspace). */
  async readLive(branchId: string, path: string, maxBytes: number | null): Promise<string | null> {
    const live = this.liveHere(branchId);
    const data = await live.provider.readFile(
      { sandbox: live.sandboxId },
      path,
      maxBytes === null ? {} : { maxBytes },
    );
    return data === null ? null : b64(data);
  }

  listLive(branchId: string, dir: string, page: ListPage | null): Promise<FileEntry[]> {
    const live = this.liveHere(branchId);
    return live.provider.listFiles({ sandbox: live.sandboxId }, dir, page ?? undefined);
  }

  private liveHere(branchId: string): LiveBranch {
    const live = this.live.get(branchId);
    if (!live || (this.ownership && !this.ownership.holdsNow(branchId)))
      throw new SandboxError("NOT_FOUND", "No live sandbox for this branch here");
    return live;
  }

  // ---- reads of the branch as it is now ----------------------------------------------------------

  /**
   * The files of a branch's live sandbox now, without waiting for its queue (reads while a run goes
   * on see its work in progress); undefined when this instance has no live sandbox for it.
   */
  filesNow(branchId: string): SandboxFiles | undefined {
    const live = this.live.get(branchId);
    return live && this.filesOf(live);
  }

  /**
   * The live sandbox of a branch, for reads of in-progress files: this instance's, or the owner's
   * elsewhere (reads go to it, and fall back to the branch's head when it cannot answer).
   */
  sandboxOf(branchId: string): { id: string; provider: SandboxProvider } | undefined {
    const live = this.live.get(branchId);
    if (live) return { id: live.sandboxId, provider: live.provider };
    const peer = this.ownership?.ownerHint(branchId);
    if (!peer || !this.options.headOf) return undefined;
    return { id: `live:${branchId}`, provider: this.ownerReader(branchId, peer) };
  }

  /** Reads of a live workspace elsewhere; the head snapshot's files when the owner has none or is gone. */
  private ownerReader(branchId: string, peer: Peer): SandboxProvider {
    const atHead = async <T>(read: (provider: SandboxProvider, source: FileSource) => Promise<T>) => {
      const head = await this.options.headOf!(branchId);
      return read(this.providers.get(head.provider), { snapshot: head.ref });
    };
    const orHead = async <T>(remote: () => Promise<T>, fallback: () => Promise<T>): Promise<T> => {
      try {
        return await remote();
      } catch (error) {
        const typed = fromPeer(error);
        if (typed instanceof SandboxError && typed.code === "NOT_FOUND") return fallback();
        if (typed instanceof AppError && typed.code === "UNAVAILABLE") {
          this.ownership?.forgetHint(branchId, peer.instanceId);
          return fallback();
        }
        throw typed;
      }
    };
    const unsupported = () =>
      Promise.reject(new SandboxError("UNAVAILABLE", "This branch's sandbox is on another instance"));
    const reader: Partial<SandboxProvider> = {
      readFile: (_source: FileSource, path: string, options?: ReadOptions) =>
        orHead(
          async () => {
            const data = await peer.call<string | null>(
              "live.read",
              { branchId, path, maxBytes: options?.maxBytes ?? null },
              { timeoutMs: OWNER_CALL_MS },
            );
            return data === null ? null : unb64(data);
          },
          () => atHead((p, s) => p.readFile(s, path, options)),
        ),
      listFiles: (_source: FileSource, dir?: string, page?: ListPage) =>
        orHead(
          () =>
            peer.call<FileEntry[]>(
              "live.list",
              { branchId, dir: dir ?? "", page: page ?? null },
              { timeoutMs: OWNER_CALL_MS },
            ),
          () => atHead((p, s) => p.listFiles(s, dir, page)),
        ),
      exec: unsupported,
      snapshot: unsupported,
      writeFile: unsupported,
      reset: unsupported,
      startService: undefined,
      watchWrites: undefined,
    };
    // Everything not about the live sandbox (status, snapshots, diffs) is the session's provider's.
    const real = this.providers.all()[0]!;
    return withOverrides(real, reader);
  }

  /** Adopts a sandbox created elsewhere (a new session's first sandbox) as a branch's live one. */
  adopt(branchId: string, sandboxId: string, head: BranchHead): void {
    this.live.set(branchId, {
      sandboxId,
      base: head.ref,
      provider: this.providers.get(head.provider),
      lastUsed: Date.now(),
    });
    // Made outside the queue, so the cap gives way when every other sandbox is busy (like the agents').
    void this.makeRoom(branchId, 0).catch(() => {});
    // A new branch: its lease is free, and taking it now makes this instance its owner.
    if (this.ownership)
      void this.locate(branchId).then(
        (where) => {
          if (!where.here) void this.forget(branchId);
        },
        () => void this.forget(branchId),
      );
  }

  /** Destroys a branch's live sandbox once its queued work is done, wherever it is. */
  async drop(branchId: string): Promise<void> {
    this.dropped.add(branchId);
    await this.queues.get(branchId);
    if (this.ownership && !this.live.has(branchId)) {
      const peer = await this.ownership.holder(branchId).catch(() => null);
      if (peer) await this.ownerCall(peer, "branch.drop", { branchId }).catch(() => {});
      return;
    }
    const live = this.live.get(branchId);
    this.live.delete(branchId);
    if (live) await live.provider.destroy(live.sandboxId);
    await this.ownership?.release(branchId);
  }

  /** Lets a branch's sandbox here go without deleting the branch (its lease went to another instance). */
  private async forget(branchId: string): Promise<void> {
    await this.queues.get(branchId);
    if (this.ownership?.holdsNow(branchId)) return;
    const live = this.live.get(branchId);
    this.live.delete(branchId);
    if (live) await live.provider.destroy(live.sandboxId).catch(() => {});
  }

  // ---- idle sandboxes and the cap -----------------------------------------------------------------

  /**
   * Drops the live sandbox of a branch with no work (its own queue item, so nothing starts meanwhile):
   * the guard stops what runs in it and keeps what would be lost, then the sandbox is destroyed and
   * the lease released, so any instance may take the branch next. False when it was kept.
   */
  private dropIdle(branchId: string): Promise<boolean> {
    const previous = this.queues.get(branchId) ?? Promise.resolve();
    const dropped = previous.then(async () => {
      const live = this.live.get(branchId);
      if (!live || this.dropped.has(branchId)) return false;
      if (this.beforeDrop && !(await this.beforeDrop(branchId, this.sandboxOfLive(live)))) return false;
      if (this.live.get(branchId) !== live) return false;
      this.live.delete(branchId);
      await live.provider.destroy(live.sandboxId).catch((error) =>
        this.options.log?.warn("could not destroy an idle branch's sandbox", {
          branchId,
          error: String(error),
        }),
      );
      await this.ownership?.release(branchId);
      return true;
    });
    this.chain(branchId, dropped);
    return dropped.catch((error) => {
      this.options.log?.warn("could not drop an idle branch's sandbox", { branchId, error: String(error) });
      return false;
    });
  }

  /** Idle: no queued work (runs, writes, holds and agent turns are all queue items) for `idleMs`. */
  private idleBranches(idleMs: number, except?: string): string[] {
    const now = Date.now();
    return [...this.live]
      .filter(([id, live]) => id !== except && !this.queues.has(id) && now - live.lastUsed >= idleMs)
      .sort((a, b) => a[1].lastUsed - b[1].lastUsed)
      .map(([id]) => id);
  }

  private async sweepIdle(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const idleMs = this.options.idleMs ?? 0;
      // One at a time: a drop may freeze the workspace (the guard), which is disk work.
      for (const branchId of this.idleBranches(idleMs)) await this.dropIdle(branchId);
      await this.releaseOrphans(idleMs);
    } finally {
      this.sweeping = false;
    }
  }

  /**
   * Leases taken for work that never made a sandbox (it failed first) would be renewed forever and
   * bring the branch's work here for nothing: released once orphaned for `idleMs`.
   */
  private async releaseOrphans(idleMs: number): Promise<void> {
    if (!this.ownership) return;
    const now = Date.now();
    const owned = new Set(this.ownership.ownedBranches());
    for (const branchId of [...this.orphans.keys()]) if (!owned.has(branchId)) this.orphans.delete(branchId);
    for (const branchId of owned) {
      if (this.live.has(branchId) || this.queues.has(branchId)) {
        this.orphans.delete(branchId);
        continue;
      }
      const since = this.orphans.get(branchId);
      if (since === undefined) this.orphans.set(branchId, now);
      else if (now - since >= idleMs) {
        this.orphans.delete(branchId);
        await this.ownership.release(branchId);
      }
    }
  }

  /**
   * Room for `extra` more live sandboxes under the cap: the least recently used idle ones are dropped.
   * When every one is in use the work fails with UNAVAILABLE (retryable) rather than waiting: a wait
   * would hold the branch's queue and its run slot for as long as other branches stay busy, with
   * nothing telling the client why; and the lease is let go, so another instance may take the branch.
   */
  private async makeRoom(keep: string, extra: number): Promise<void> {
    const max = this.options.maxLive ?? Number.POSITIVE_INFINITY;
    while (this.live.size + this.creating + extra > max) {
      let freed = false;
      for (const branchId of this.idleBranches(0, keep)) {
        if (await this.dropIdle(branchId)) {
          freed = true;
          break;
        }
      }
      if (freed) continue;
      if (extra === 0) return;
      if (!this.live.has(keep)) await this.ownership?.release(keep);
      throw new AppError(
        "UNAVAILABLE",
        `This instance keeps at most ${max} live workspaces and every one is in use; try again shortly`,
        { retryable: true },
      );
    }
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    for (const hold of this.holds.values()) hold.release();
    for (const branchId of [...this.live.keys()]) await this.drop(branchId).catch(() => {});
  }
}

/** `real` with some members replaced; its own methods stay bound to it. */
function withOverrides(real: SandboxProvider, overrides: Partial<SandboxProvider>): SandboxProvider {
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop as keyof SandboxProvider];
      const value = Reflect.get(target, prop, receiver === undefined ? target : target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
