// Which instance owns each branch's live sandbox (and live agent), one at a time, held by a lease in
// the shared store. The heartbeat renews this instance's key and all its leases in one round trip
// every third of the lease; a lease it finds lost (this process was paused past its lease and another
// took over) is dropped at once and never renewed. `locate` answers "here" (taking a free lease, or
// the lease of an instance that is gone) or names the live owner to forward to. With no shared store
// (one instance, `npm start`) every branch is here and nothing is stored or forwarded. Without leases
// (PROFILE=serverless: instances cannot call each other) every branch is here too, and the store
// only tells which instances are alive (whose runs are theirs).
import type { Bus } from "../bus/bus.ts";
import type { InstanceIdentity } from "./identity.ts";
import type { Peer, PeerFactory } from "./peer-client.ts";
import type { ClusterStore } from "./store.ts";

export type Location = { here: true } | { here: false; peer: Peer };

/** Lease changes, so every instance knows who owns what without asking (reads of live workspaces). */
const OWNERS_TOPIC = "cluster:owners";
interface OwnerChange {
  branchId: string;
  instanceId: string | null;
  url: string | null;
}

export interface OwnershipDeps {
  store: ClusterStore | null;
  self: InstanceIdentity;
  peers: PeerFactory;
  /** Lease and heartbeat-key lifetime: how long a killed owner blocks a takeover. */
  leaseMs: number;
  /** Branch leases and forwarding (default); false: heartbeats only, every branch served here. */
  leases?: boolean;
  bus: Bus;
  log: { warn(message: string, fields?: Record<string, unknown>): void };
}

export class Ownership {
  readonly solo: boolean;
  /** Whether branches have owners elsewhere that work is passed to (leases in a shared store). */
  readonly forwards: boolean;
  /** Leases held here, with how long each is good for by this process's clock. */
  private readonly owned = new Map<string, number>();
  /** Owners elsewhere, as last heard (a hint: `locate` asks the store). */
  private readonly owners = new Map<string, { instanceId: string; url: string }>();
  private readonly lostListeners: ((branchId: string) => void)[] = [];
  private readonly acquiredListeners: ((branchId: string) => void)[] = [];
  private readonly sweepListeners: (() => Promise<void>)[] = [];
  private timers: ReturnType<typeof setInterval>[] = [];
  private watching: AsyncIterableIterator<unknown> | null = null;
  private closed = false;
  /** The last heartbeat's outcome: false while the shared store is unreachable. */
  private healthy = true;

  constructor(private readonly deps: OwnershipDeps) {
    this.solo = deps.store === null;
    this.forwards = !this.solo && deps.leases !== false;
  }

  get self(): InstanceIdentity {
    return this.deps.self;
  }

  get leaseMs(): number {
    return this.deps.leaseMs;
  }

  /** Registers this instance and starts the heartbeat and the sweep for runs of gone instances. */
  async start(): Promise<void> {
    if (this.solo) return;
    await this.beat();
    const beat = setInterval(() => void this.beat(), Math.max(100, Math.floor(this.deps.leaseMs / 3)));
    const sweep = setInterval(() => void this.sweep(), this.deps.leaseMs);
    beat.unref?.();
    sweep.unref?.();
    this.timers = [beat, sweep];
    if (this.forwards) void this.watchOwners();
  }

  onLost(listener: (branchId: string) => void): void {
    this.lostListeners.push(listener);
  }

  /** Called whenever this instance takes a lease it did not hold (first use, or a takeover). */
  onAcquired(listener: (branchId: string) => void): void {
    this.acquiredListeners.push(listener);
  }

  /** Called every lease period: find work of instances that are gone (runs left QUEUED/RUNNING). */
  onSweep(listener: () => Promise<void>): void {
    this.sweepListeners.push(listener);
  }

  /** Whether this instance holds the branch's lease, by its own clock (no round trip). */
  holdsNow(branchId: string): boolean {
    if (!this.forwards) return true;
    return (this.owned.get(branchId) ?? 0) > Date.now();
  }

  /** The branches whose leases this instance holds now. */
  ownedBranches(): string[] {
    return [...this.owned.keys()];
  }

  /** Whether this instance holds the lease, confirmed by the store (fencing before a head move). */
  async holds(branchId: string): Promise<boolean> {
    if (!this.forwards) return true;
    if (!this.holdsNow(branchId)) return false;
    return (await this.deps.store!.holder(branchId)) === this.deps.self.id;
  }

  /** Here (the lease is ours, or now taken), or the live owner elsewhere. */
  async locate(branchId: string): Promise<Location> {
    if (!this.forwards || this.holdsNow(branchId)) return { here: true };
    if (this.closed) throw new Error("this instance is shutting down");
    const store = this.deps.store!;
    for (let attempt = 0; attempt < 3; attempt++) {
      const sentAt = Date.now();
      const holder = await store.acquire(branchId, this.deps.self.id, this.deps.leaseMs);
      if (holder === this.deps.self.id) {
        this.owned.set(branchId, sentAt + this.deps.leaseMs);
        this.announce(branchId, this.deps.self.id, this.deps.self.url);
        for (const listener of this.acquiredListeners) listener(branchId);
        return { here: true };
      }
      const url = await store.instanceUrl(holder);
      if (url) {
        this.owners.set(branchId, { instanceId: holder, url });
        return { here: false, peer: this.deps.peers(holder, url) };
      }
      // Its key expired between the two reads: the next acquire sees it gone and takes over.
    }
    throw new Error("the branch's lease keeps changing hands");
  }

  /** The owner elsewhere as last heard, without a round trip (a hint; null when here or unknown). */
  ownerHint(branchId: string): Peer | null {
    if (!this.forwards || this.holdsNow(branchId)) return null;
    const owner = this.owners.get(branchId);
    return owner ? this.deps.peers(owner.instanceId, owner.url) : null;
  }

  /** Forgets a hint that proved wrong (its instance did not answer). */
  forgetHint(branchId: string, instanceId: string): void {
    if (this.owners.get(branchId)?.instanceId === instanceId) this.owners.delete(branchId);
  }

  /** The live holder of the branch's lease when it is another instance; null when free, gone or here. */
  async holder(branchId: string): Promise<Peer | null> {
    if (!this.forwards || this.holdsNow(branchId)) return null;
    const holder = await this.deps.store!.holder(branchId);
    if (!holder || holder === this.deps.self.id) return null;
    return this.peer(holder);
  }

  /** A live instance as a peer; null when it is gone. */
  async peer(instanceId: string): Promise<Peer | null> {
    if (this.solo) return null;
    const url = await this.deps.store!.instanceUrl(instanceId);
    return url ? this.deps.peers(instanceId, url) : null;
  }

  async alive(instanceId: string): Promise<boolean> {
    if (this.solo || instanceId === this.deps.self.id) return true;
    return (await this.deps.store!.instanceUrl(instanceId)) !== null;
  }

  /** Gives the branch up (its live sandbox was dropped here). */
  async release(branchId: string): Promise<void> {
    if (this.solo || !this.owned.delete(branchId)) return;
    await this.deps.store!.release(branchId, this.deps.self.id).catch(() => {});
    this.announce(branchId, null, null);
  }

  private announce(branchId: string, instanceId: string | null, url: string | null) {
    void this.deps.bus.publish<OwnerChange>(OWNERS_TOPIC, { branchId, instanceId, url }).catch(() => {});
  }

  private async watchOwners() {
    try {
      this.watching = this.deps.bus.subscribe<OwnerChange>(OWNERS_TOPIC, { after: 0 });
      for await (const { payload } of this.watching as AsyncIterableIterator<{ payload: OwnerChange }>) {
        if (payload.instanceId === this.deps.self.id) continue;
        if (payload.instanceId && payload.url)
          this.owners.set(payload.branchId, { instanceId: payload.instanceId, url: payload.url });
        else this.owners.delete(payload.branchId);
      }
    } catch (error) {
      if (!this.closed) this.deps.log.warn("stopped following branch owners", { error: String(error) });
    }
  }

  private async beat() {
    if (this.closed) return;
    const sentAt = Date.now();
    const branchIds = [...this.owned.keys()];
    try {
      const lost = new Set(await this.deps.store!.heartbeat(this.deps.self, branchIds, this.deps.leaseMs));
      this.healthy = true;
      for (const branchId of branchIds) {
        if (!this.owned.has(branchId)) continue; // released meanwhile
        if (lost.has(branchId)) {
          this.owned.delete(branchId);
          this.deps.log.warn("lost a branch's lease (another instance took it over)", { branchId });
          for (const listener of this.lostListeners) listener(branchId);
        } else this.owned.set(branchId, sentAt + this.deps.leaseMs);
      }
    } catch (error) {
      if (this.healthy) this.deps.log.warn("cluster heartbeat failed", { error: String(error) });
      this.healthy = false;
    }
  }

  private async sweep() {
    for (const listener of this.sweepListeners)
      await listener().catch((error) =>
        this.deps.log.warn("sweep for runs of gone instances failed", { error: String(error) }),
      );
  }

  /** Graceful stop: every lease is released and this instance's key removed, so others take over at once. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    await this.watching?.return?.();
    if (this.solo) return;
    const store = this.deps.store!;
    await Promise.all([...this.owned.keys()].map((b) => store.release(b, this.deps.self.id).catch(() => {})));
    this.owned.clear();
    await store.leave(this.deps.self.id).catch(() => {});
  }
}
