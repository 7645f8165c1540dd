// Live sandboxes for branches, owned by this instance. A branch's sandbox is created from its head on
// first use (also after a restart) and reset whenever the head moved without it (a rollback). Work on
// one branch runs one item at a time; runs on different branches run in parallel up to a limit.
import type { SandboxProvider } from "../sandbox/provider.ts";

interface LiveBranch {
  sandboxId: string;
  /** The provider snapshot the sandbox currently shows (its last freeze or reset). */
  base: string;
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

export class BranchRuntime {
  private readonly live = new Map<string, LiveBranch>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly slots: Slots;

  constructor(
    private readonly provider: SandboxProvider,
    maxParallelRuns: number,
  ) {
    this.slots = new Slots(maxParallelRuns);
  }

  /**
   * Runs `work` after every earlier item queued on the branch, with the branch's live sandbox showing
   * `head` (a provider snapshot id, read by `headOf` when the item starts). With `slot`, it also waits
   * for one of the parallel run slots.
   */
  enqueue<T>(
    branchId: string,
    headOf: () => Promise<string>,
    work: (sandbox: { id: string; setBase(base: string): void }) => Promise<T>,
    options: { slot?: boolean } = {},
  ): Promise<T> {
    const previous = this.queues.get(branchId) ?? Promise.resolve();
    const result = previous.then(async () => {
      const release = options.slot ? await this.slots.acquire() : () => {};
      try {
        const sandboxId = await this.sandboxAt(branchId, await headOf());
        return await work({
          id: sandboxId,
          setBase: (base) => {
            const live = this.live.get(branchId);
            if (live) live.base = base;
          },
        });
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

  private async sandboxAt(branchId: string, head: string): Promise<string> {
    const live = this.live.get(branchId);
    if (!live) {
      const sandboxId = await this.provider.fork(head);
      this.live.set(branchId, { sandboxId, base: head });
      return sandboxId;
    }
    if (live.base !== head) {
      await this.provider.reset(live.sandboxId, head);
      live.base = head;
    }
    return live.sandboxId;
  }

  /** The live sandbox of a branch, if this instance has one (for reads of in-progress files). */
  sandboxOf(branchId: string): string | undefined {
    return this.live.get(branchId)?.sandboxId;
  }

  /** Adopts a sandbox created elsewhere (a new session's first sandbox) as a branch's live one. */
  adopt(branchId: string, sandboxId: string, base: string): void {
    this.live.set(branchId, { sandboxId, base });
  }

  /** Destroys a branch's live sandbox once its queued work is done. */
  async drop(branchId: string): Promise<void> {
    await this.queues.get(branchId);
    const live = this.live.get(branchId);
    this.live.delete(branchId);
    if (live) await this.provider.destroy(live.sandboxId);
  }

  async close(): Promise<void> {
    for (const branchId of [...this.live.keys()]) await this.drop(branchId).catch(() => {});
  }
}
