// The live agents of this instance, one per branch in use: started on a branch's first turn (or
// ahead of it, when a fork or an exploration makes a branch), kept while it is used, stopped after
// `idleMs` without a turn, and evicted least-recently-used when starting one more would pass
// `maxLive`. A stopped agent starts again, transparently, on the branch's next turn: its
// conversation is in the workspace. Only providers that can run sandbox services have live agents.

import type { SandboxProvider } from "../../sandbox/provider.ts";
import type { ModelGateway } from "../gateway.ts";
import type { PermissionReplier, PermissionReply } from "../permissions.ts";
import {
  BranchServer,
  type LiveLog,
  type TurnHooks,
  type TurnRequest,
  type TurnResult,
} from "./branch-server.ts";
import type { UnixFetch } from "./opencode-client.ts";

export interface AgentPoolOptions {
  gateway: ModelGateway;
  /** Host directory (private to the platform) for the agents' socket directories. */
  socketRoot: string;
  /** A live agent with no turn for this long is stopped. */
  idleMs: number;
  /** Live agents this instance keeps at most (least recently used go first). */
  maxLive: number;
  /** Longest wait for a server to listen. */
  readyTimeoutMs?: number;
  log: LiveLog;
  /** HTTP over a live server's unix socket: the runtime port's fetchUnix. */
  fetchUnix: UnixFetch;
}

/** A branch's live sandbox, as the branch runtime hands it out. */
export interface LiveSandbox {
  id: string;
  provider: SandboxProvider;
}

interface Entry {
  sandboxId: string;
  server: Promise<BranchServer>;
  /** Set once started, so eviction can look at it without waiting. */
  started: BranchServer | null;
  lastUsed: number;
  idleTimer?: ReturnType<typeof setTimeout>;
}

export interface LiveAgentInfo {
  branchId: string;
  pid: number | null;
  busy: boolean;
  lastUsed: Date;
}

export class AgentPool implements PermissionReplier {
  private readonly entries = new Map<string, Entry>();
  /** Servers started since the pool was made (tests tell a restart from a reuse by this). */
  starts = 0;
  private closed = false;

  constructor(private readonly options: AgentPoolOptions) {}

  /** Whether this provider's sandboxes can have a live agent. */
  supports(provider: SandboxProvider): boolean {
    return typeof provider.startService === "function";
  }

  /** The branch's live server on this sandbox: the running one, or one started (again) now. */
  acquire(branchId: string, sandbox: LiveSandbox, title = "opencode.cloud"): Promise<BranchServer> {
    if (this.closed) return Promise.reject(new Error("The agent pool is closed"));
    const entry = this.entries.get(branchId);
    if (entry && entry.sandboxId === sandbox.id && !entry.started?.stopped) {
      this.touch(entry);
      return entry.server.then((server) =>
        server.stopped ? this.acquire(branchId, sandbox, title) : server,
      );
    }
    if (entry) this.forget(branchId, entry, true);
    const fresh: Entry = { sandboxId: sandbox.id, server: null!, started: null, lastUsed: Date.now() };
    fresh.server = BranchServer.start({
      branchId,
      sandboxId: sandbox.id,
      provider: sandbox.provider,
      gateway: this.options.gateway,
      socketRoot: this.options.socketRoot,
      readyTimeoutMs: this.options.readyTimeoutMs ?? 60_000,
      title,
      log: this.options.log,
      fetchUnix: this.options.fetchUnix,
    });
    this.entries.set(branchId, fresh);
    this.starts++;
    this.makeRoom(branchId);
    fresh.server.then(
      (server) => {
        fresh.started = server;
        void server.exited.then(() => this.forget(branchId, fresh, false));
        if (this.entries.get(branchId) !== fresh || this.closed) void server.stop();
        else {
          this.armIdle(fresh);
          // Agents that were starting could not be evicted then: the cap is enforced again now.
          this.makeRoom(branchId);
        }
      },
      () => this.forget(branchId, fresh, false),
    );
    return fresh.server;
  }

  /** The branch's server when it is live now (no start). */
  running(branchId: string): BranchServer | undefined {
    const server = this.entries.get(branchId)?.started;
    return server && !server.stopped ? server : undefined;
  }

  /** One turn on the branch's live server (started first when it has none). */
  async turn(
    branchId: string,
    sandbox: LiveSandbox,
    request: TurnRequest,
    hooks: TurnHooks,
  ): Promise<TurnResult> {
    const server = await this.acquire(branchId, sandbox);
    const entry = this.entries.get(branchId);
    if (entry?.idleTimer) clearTimeout(entry.idleTimer);
    try {
      return await server.turn(request, hooks);
    } finally {
      if (entry && this.entries.get(branchId) === entry) {
        this.touch(entry);
        this.armIdle(entry);
        this.makeRoom(branchId);
      }
    }
  }

  /** Answers a permission ask on the branch's live server (PermissionReplier); throws when it has none. */
  async replyPermission(
    branchId: string,
    permissionId: string,
    reply: PermissionReply,
    message?: string,
  ): Promise<void> {
    const server = this.running(branchId);
    if (!server) throw new Error("The branch has no live agent on this instance");
    await server.replyPermission(permissionId, reply, message);
  }

  /** Stops the branch's live agent, if it has one. */
  async stop(branchId: string): Promise<void> {
    const entry = this.entries.get(branchId);
    if (entry) await this.forget(branchId, entry, true);
  }

  list(): LiveAgentInfo[] {
    return [...this.entries].map(([branchId, entry]) => ({
      branchId,
      pid: entry.started?.pid ?? null,
      busy: (entry.started?.busy ?? 0) > 0,
      lastUsed: new Date(entry.lastUsed),
    }));
  }

  get size(): number {
    return this.entries.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.entries].map(([branchId, entry]) => this.forget(branchId, entry, true)));
  }

  private touch(entry: Entry) {
    entry.lastUsed = Date.now();
  }

  private armIdle(entry: Entry) {
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
    entry.idleTimer = setTimeout(() => {
      const server = entry.started;
      if (!server || server.busy > 0) return void this.armIdle(entry);
      const branchId = [...this.entries].find(([, e]) => e === entry)?.[0];
      if (branchId) {
        this.options.log.debug("live agent idle: stopping", { branchId });
        void this.forget(branchId, entry, true);
      }
    }, this.options.idleMs);
    (entry.idleTimer as { unref?: () => void }).unref?.();
  }

  /** Evicts the least recently used idle agents until there is room for `keep`'s. */
  private makeRoom(keep: string) {
    while (this.entries.size > this.options.maxLive) {
      let victim: [string, Entry] | null = null;
      for (const [branchId, entry] of this.entries) {
        if (branchId === keep || !entry.started || entry.started.busy > 0) continue;
        if (!victim || entry.lastUsed < victim[1].lastUsed) victim = [branchId, entry];
      }
      if (!victim) return; // every other one is busy or starting: the cap gives way for now
      this.options.log.debug("live agents at the cap: evicting the least recently used", {
        branchId: victim[0],
      });
      void this.forget(victim[0], victim[1], true);
    }
  }

  private async forget(branchId: string, entry: Entry, stop: boolean): Promise<void> {
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
    if (this.entries.get(branchId) === entry) this.entries.delete(branchId);
    if (!stop) return;
    const server = await entry.server.catch(() => null);
    await server?.stop();
  }
}
