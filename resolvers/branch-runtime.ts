// Live sandboxes for branches, owned by this instance. A branch's sandbox is created from its head on
// first use (also after a restart) and reset whenever the head moved without it (a rollback). Work on
// one branch runs one item at a time; runs on different branches run in parallel up to a limit.
import { type ReadOptions, SandboxError, type SandboxProvider } from "../sandbox/provider.ts";
import type { SandboxProviders } from "../sandbox/registry.ts";

interface LiveBranch {
  sandboxId: string;
  /** The provider snapshot the sandbox currently shows (its last freeze or reset). */
  base: string;
  provider: SandboxProvider;
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

export class BranchRuntime {
  private readonly live = new Map<string, LiveBranch>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly slots: Slots;
  private hooks: BranchWorkHooks | null = null;
  /** Branches dropped here (deleted): late work for them (a buffer's timer) must not revive them. */
  private readonly dropped = new Set<string>();

  constructor(
    private readonly providers: SandboxProviders,
    maxParallelRuns: number,
  ) {
    this.slots = new Slots(maxParallelRuns);
  }

  /**
   * Runs `work` after every earlier item queued on the branch, with the branch's live sandbox showing
   * its head (read by `headOf` when the item starts). With `slot`, it also waits for one of the
   * parallel run slots.
   */
  enqueue<T>(
    branchId: string,
    headOf: () => Promise<BranchHead>,
    work: (sandbox: BranchSandbox) => Promise<T>,
    options: { slot?: boolean } = {},
  ): Promise<T> {
    if (this.dropped.has(branchId))
      return Promise.reject(new SandboxError("NOT_FOUND", "The branch was deleted"));
    const previous = this.queues.get(branchId) ?? Promise.resolve();
    const result = previous.then(async () => {
      if (this.dropped.has(branchId)) throw new SandboxError("NOT_FOUND", "The branch was deleted");
      const release = options.slot ? await this.slots.acquire() : () => {};
      try {
        // Before a reset (a rollback), so the reset is what open buffers see afterwards.
        const current = this.live.get(branchId);
        if (current) await this.hooks?.before(branchId, this.filesOf(current));
        const live = await this.sandboxAt(branchId, await headOf());
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
    const settled = result.catch(() => {});
    this.queues.set(branchId, settled);
    // Forget the queue once it drains, so idle branches hold nothing.
    void settled.then(() => {
      if (this.queues.get(branchId) === settled) this.queues.delete(branchId);
    });
    return result;
  }

  setHooks(hooks: BranchWorkHooks): void {
    this.hooks = hooks;
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
      const created: LiveBranch = { sandboxId: await provider.fork(head.ref), base: head.ref, provider };
      this.live.set(branchId, created);
      return created;
    }
    if (live.base !== head.ref) {
      await live.provider.reset(live.sandboxId, head.ref);
      live.base = head.ref;
    }
    return live;
  }

  /**
   * The files of a branch's live sandbox now, without waiting for its queue (reads while a run goes
   * on see its work in progress); undefined when this instance has no live sandbox for it.
   */
  filesNow(branchId: string): SandboxFiles | undefined {
    const live = this.live.get(branchId);
    return live && this.filesOf(live);
  }

  /** The live sandbox of a branch, if this instance has one (for reads of in-progress files). */
  sandboxOf(branchId: string): { id: string; provider: SandboxProvider } | undefined {
    const live = this.live.get(branchId);
    return live && { id: live.sandboxId, provider: live.provider };
  }

  /** Adopts a sandbox created elsewhere (a new session's first sandbox) as a branch's live one. */
  adopt(branchId: string, sandboxId: string, head: BranchHead): void {
    this.live.set(branchId, { sandboxId, base: head.ref, provider: this.providers.get(head.provider) });
  }

  /** Destroys a branch's live sandbox once its queued work is done. */
  async drop(branchId: string): Promise<void> {
    this.dropped.add(branchId);
    await this.queues.get(branchId);
    const live = this.live.get(branchId);
    this.live.delete(branchId);
    if (live) await live.provider.destroy(live.sandboxId);
  }

  async close(): Promise<void> {
    for (const branchId of [...this.live.keys()]) await this.drop(branchId).catch(() => {});
  }
}
