// Collaboration sockets per signed-in user, counted over every instance: each open socket holds a
// lease in the shared counters (the run quotas' RunCounters: one atomic script per acquire in
// Redis/Upstash, in memory for one process). The instance renews its sockets' leases every
// LEASE_MS / 3 (one command per user with sockets here), so the sockets of a killed instance stop
// counting within LEASE_MS. If the shared store cannot be reached, the socket is counted against this
// instance's own sockets instead (the limit still holds per instance; collaboration does not stop).
import type { RunCounters } from "../resolvers/run-quota.ts";

export const SOCKET_LEASE_MS = 30_000;

/** The counters key of one user's collaboration sockets. */
const keyOf = (userId: string) => `collab:sockets:${userId}`;

export interface SocketSlotsDeps {
  counters: RunCounters;
  onError(message: string, error: unknown): void;
  leaseMs?: number;
}

export class SocketSlots {
  /** Key -> leases held by sockets of this instance (renewed together). */
  private readonly held = new Map<string, Set<string>>();
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly leaseMs: number;

  constructor(private readonly deps: SocketSlotsDeps) {
    this.leaseMs = deps.leaseMs ?? SOCKET_LEASE_MS;
    this.timer = setInterval(() => void this.renew(), this.leaseMs / 3);
    (this.timer as { unref?: () => void }).unref?.();
  }

  /**
   * Takes one of the user's `limit` slots for a socket. Returns its release, or null when the user
   * holds `limit` already. `localCount` (sockets of the user open here, this one included) decides
   * when the shared store fails.
   */
  async acquire(userId: string, limit: number, localCount: () => number): Promise<(() => void) | null> {
    const key = keyOf(userId);
    const member = crypto.randomUUID();
    try {
      const { ok } = await this.deps.counters.acquire(key, member, limit, this.leaseMs);
      if (!ok) return null;
    } catch (error) {
      this.deps.onError("collab: counting sockets in the shared store failed; counted here", error);
      return localCount() > limit ? null : () => {};
    }
    const members = this.held.get(key) ?? new Set<string>();
    members.add(member);
    this.held.set(key, members);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      members.delete(member);
      if (members.size === 0 && this.held.get(key) === members) this.held.delete(key);
      // A release that fails leaves a lease that expires within leaseMs (it is no longer renewed).
      void this.deps.counters.release(key, member).catch(() => {});
    };
  }

  private async renew() {
    for (const [key, members] of this.held)
      await this.deps.counters
        .renew(key, [...members], this.leaseMs)
        .catch((error) => this.deps.onError("collab: renewing socket leases failed", error));
  }

  close(): void {
    clearInterval(this.timer);
  }
}
