// One branch's live agent: `opencode serve` running in the branch's sandbox as a service, reached
// through its unix socket, followed on one event stream for its whole life. A turn is a prompt
// (prompt_async on the branch's own conversation) or a request an opencode client sent through the
// attach proxy, followed on the stream until its session is idle. The server's gateway token is its
// own (it outlives runs) and carries a run's model and usage only while that run's turn goes on.
import { randomBytes } from "node:crypto";
import { lstat, mkdtemp, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { SandboxProvider, SandboxService } from "../../sandbox/provider.ts";
import { type AgentEvent, LineSplitter } from "../events.ts";
import type { ModelGateway, Upstream, Usage } from "../gateway.ts";
import { AGENT_STATE_DIR } from "../opencode-binary.ts";
import type { PermissionReply, PermissionRule } from "../permissions.ts";
import { OpencodeClient, OpencodeError, type UnixFetch } from "./opencode-client.ts";
import { AGENT_SOCKET_NAME, serverCommand } from "./server-command.ts";
import { type RawEvent, TurnEvents } from "./turn-events.ts";

/** Where the branch's own conversation id is kept: in the workspace, so it forks and rolls back. */
export const SESSION_ID_FILE = `${AGENT_STATE_DIR}/occ/session-id`;
/** How long an aborted turn may take to wind down before the run ends anyway. */
const ABORT_GRACE_MS = 10_000;
/** The event stream reconnects after this pause when it drops while the server lives. */
const RECONNECT_MS = 100;

export interface LiveLog {
  debug(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

export interface BranchServerOptions {
  branchId: string;
  sandboxId: string;
  provider: SandboxProvider;
  gateway: ModelGateway;
  /** Host directory (private) under which each server gets its socket directory. */
  socketRoot: string;
  /** Longest wait for the server to listen. */
  readyTimeoutMs: number;
  /** Title of the branch's conversation when it is created (spares the model a title request). */
  title: string;
  log: LiveLog;
  /** HTTP over the server's unix socket (the runtime's). */
  fetchUnix: UnixFetch;
}

/** What a turn runs: the branch's own conversation, or a request from an attached opencode client. */
export type TurnRequest =
  | { kind: "prompt"; text: string }
  | {
      kind: "forward";
      sessionId: string;
      method: string;
      /** Path and query as the client sent them (e.g. /session/ses_…/message). */
      pathAndQuery: string;
      headers: Headers;
      body: Uint8Array | null;
    };

export interface TurnHooks {
  runId: string;
  upstream: Upstream;
  signal: AbortSignal;
  /** The permission ruleset for this turn (the platform session's ALLOW or ASK), applied before it starts. */
  permission?: PermissionRule[];
  onEvent(event: AgentEvent): void;
  /** A forwarded request's answer, as soon as opencode gives it (prompt_async: at once; message: at the end). */
  onAnswer?(answer: ForwardedAnswer): void;
}

export interface ForwardedAnswer {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

export interface TurnResult {
  /** The turn reached its end (the session went idle) and was not aborted. */
  done: boolean;
  aborted: boolean;
  error: string | null;
  /** What the run used of the model, counted by the gateway. */
  usage: Usage | null;
  /** A forwarded request's own answer, for the client that sent it. */
  answer: ForwardedAnswer | null;
}

type Listener = (event: RawEvent) => void;
const RECONNECTED: RawEvent = { type: "occ.reconnected" };

export class BranchServer {
  readonly client: OpencodeClient;
  /** Settles once the server has stopped (stop, crash, the sandbox reset or destroyed). */
  readonly exited: Promise<void>;
  stopped = false;
  /** Turns in progress (at most one: runs on a branch are serialised). */
  busy = 0;
  lastUsed = Date.now();
  private service: SandboxService | null = null;
  private readonly listeners = new Set<Listener>();
  /** Turns in progress, told when the server stops. */
  private readonly stopWatchers = new Set<() => void>();
  private readonly events = new AbortController();
  private sessionId: string | null = null;
  /** The permission ruleset last applied to each session by this server (PATCH appends). */
  private readonly applied = new Map<string, string>();
  private markExited!: () => void;

  private constructor(
    private readonly options: BranchServerOptions,
    /** Bound into the sandbox (writable): where the supervisor creates the socket. */
    private readonly socketDir: string,
    /** The platform's own: where the socket is moved once created, and connected to from then on. */
    private readonly privateDir: string,
    private readonly token: string,
    private readonly password: string,
  ) {
    this.client = new OpencodeClient(join(privateDir, AGENT_SOCKET_NAME), password, options.fetchUnix);
    this.exited = new Promise((resolve) => {
      this.markExited = resolve;
    });
  }

  /** Starts the server in the sandbox and resolves once it listens and its events are followed. */
  static async start(options: BranchServerOptions): Promise<BranchServer> {
    const socketDir = await mkdtemp(join(options.socketRoot, "a-"));
    const privateDir = await mkdtemp(join(options.socketRoot, "p-"));
    const server = new BranchServer(
      options,
      socketDir,
      privateDir,
      options.gateway.grantServer(),
      randomBytes(24).toString("base64url"),
    );
    try {
      await server.launch();
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  get branchId(): string {
    return this.options.branchId;
  }

  get sandboxId(): string {
    return this.options.sandboxId;
  }

  /** Host pid of the sandbox service (changes when the server is restarted). */
  get pid(): number | null {
    return this.service?.pid ?? null;
  }

  memoryBytes(): Promise<number | null> {
    return this.service?.memoryBytes() ?? Promise.resolve(null);
  }

  private async launch(): Promise<void> {
    const { provider, sandboxId, log, branchId } = this.options;
    if (!provider.startService) throw new Error("This sandbox provider cannot keep an agent live");
    const lines = new LineSplitter();
    const decoder = new TextDecoder();
    let stderr = "";
    let ready!: () => void;
    const listening = new Promise<void>((resolve) => {
      ready = resolve;
    });
    this.service = await provider.startService(sandboxId, {
      ...serverCommand({
        gatewaySocket: this.options.gateway.socketPath,
        token: this.token,
        password: this.password,
        socketDir: this.socketDir,
      }),
      onOutput: ({ stream, data }) => {
        if (stream === "stdout") {
          for (const line of lines.push(data)) if (line.includes('"ready":true')) ready();
        } else stderr = (stderr + decoder.decode(data, { stream: true })).slice(-4000);
      },
    });
    void this.service.exited.then(({ code, signal }) => {
      log.debug("live agent stopped", { branchId, code, signal });
      void this.cleanUp();
    });
    const exitedEarly = this.exited.then(() => {
      throw new Error(`opencode serve stopped before it was ready: ${stderr.trim().slice(-1000)}`);
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`opencode serve was not ready after ${this.options.readyTimeoutMs} ms`)),
        this.options.readyTimeoutMs,
      );
    });
    try {
      await Promise.race([listening, exitedEarly, timeout]);
      await this.takeSocket();
      await Promise.race([this.follow(), exitedEarly, timeout]);
    } finally {
      clearTimeout(timer);
      exitedEarly.catch(() => {});
    }
  }

  /**
   * Moves the socket out of the directory the sandbox can write (a socket stays reachable under a new
   * name), so nothing in the sandbox can later swap it for a symlink to some host socket and have the
   * platform connect there. What was moved must be a socket (a symlink is moved as itself: refused).
   */
  private async takeSocket(): Promise<void> {
    const target = join(this.privateDir, AGENT_SOCKET_NAME);
    await rename(join(this.socketDir, AGENT_SOCKET_NAME), target);
    if (!(await lstat(target)).isSocket()) throw new Error("The agent's socket is not a socket");
  }

  /** Follows GET /event for the server's life; resolves once the first subscription is acknowledged. */
  private follow(): Promise<void> {
    return new Promise((resolve, reject) => {
      let connected = false;
      void (async () => {
        while (!this.stopped && !this.events.signal.aborted) {
          try {
            for await (const event of this.client.events(this.events.signal, () => {
              if (connected) this.dispatch(RECONNECTED);
              connected = true;
              resolve();
            }))
              this.dispatch(event);
          } catch (error) {
            if (this.stopped || this.events.signal.aborted) return;
            if (!connected) return reject(error);
            this.options.log.warn("live agent event stream dropped; reconnecting", {
              branchId: this.options.branchId,
              error: String(error),
            });
          }
          await new Promise((r) => setTimeout(r, RECONNECT_MS));
        }
      })();
    });
  }

  private dispatch(event: RawEvent) {
    for (const listener of this.listeners) listener(event);
  }

  /** Every raw event of the server while `listener` is registered (the attach proxy's watchers). */
  onEvent(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The branch's own conversation: the one its workspace names, or a new one. */
  private async ownSession(): Promise<string> {
    if (this.sessionId) return this.sessionId;
    const { provider, sandboxId } = this.options;
    // The workspace is the user's: the file may be anything, so read no more than an id can be.
    const saved = await provider
      .readFile({ sandbox: sandboxId }, SESSION_ID_FILE, { maxBytes: 4096 })
      .catch(() => null);
    const id = saved ? new TextDecoder().decode(saved).trim() : "";
    if (id && /^ses_\w+$/.test(id)) {
      const found = await this.client.call("GET", `/session/${id}`).then(
        () => true,
        () => false,
      );
      if (found) {
        this.sessionId = id;
        return id;
      }
    }
    const created = await this.client.call<{ id: string }>("POST", "/session", { title: this.options.title });
    await provider.writeFile(sandboxId, SESSION_ID_FILE, created.id);
    this.sessionId = created.id;
    return created.id;
  }

  /** Whether opencode reports the session as not busy (after a reconnect, a missed idle is found here). */
  private async isIdle(sessionId: string): Promise<boolean> {
    const status = await this.client
      .call<Record<string, { type: string }>>("GET", "/session/status")
      .catch(() => null);
    return status !== null && (status[sessionId]?.type ?? "idle") === "idle";
  }

  /** One turn, from the request to the session's idle; events are normalised as they come. */
  async turn(request: TurnRequest, hooks: TurnHooks): Promise<TurnResult> {
    if (this.stopped) throw new Error("The live agent has stopped");
    const { gateway } = this.options;
    gateway.attach(this.token, hooks.runId, hooks.upstream);
    this.busy++;
    this.lastUsed = Date.now();
    try {
      return await this.runTurn(request, hooks);
    } finally {
      this.busy--;
      this.lastUsed = Date.now();
    }
  }

  private async runTurn(request: TurnRequest, hooks: TurnHooks): Promise<TurnResult> {
    const result: TurnResult = { done: false, aborted: false, error: null, usage: null, answer: null };
    let finish!: () => void;
    const ended = new Promise<void>((resolve) => {
      finish = resolve;
    });
    let events: TurnEvents | null = null;
    const pending: RawEvent[] = [];
    const listener: Listener = (raw) => {
      if (!events) return void pending.push(raw);
      if (raw === RECONNECTED) {
        const current = events;
        void this.isIdle(current.sessionId).then((idle) => idle && finish());
        return;
      }
      for (const event of events.push(raw)) {
        if (event.type === "error") result.error ??= event.message;
        hooks.onEvent(event);
      }
      if (events.idle) finish();
    };
    this.listeners.add(listener);
    // (Not a reaction on `exited`: those would pile up over a long-lived server's turns.)
    const onStop = () => {
      result.error ??= "The live agent stopped during the turn";
      finish();
    };
    if (this.stopped) onStop();
    this.stopWatchers.add(onStop);
    let sessionId: string | null = null;
    const onAbort = () => {
      result.aborted = true;
      if (sessionId) void this.client.call("POST", `/session/${sessionId}/abort`).catch(() => {});
      setTimeout(finish, ABORT_GRACE_MS).unref?.();
    };
    hooks.signal.addEventListener("abort", onAbort, { once: true });
    try {
      sessionId = request.kind === "prompt" ? await this.ownSession() : request.sessionId;
      events = new TurnEvents(sessionId);
      for (const raw of pending.splice(0)) listener(raw);
      if (hooks.signal.aborted) {
        result.aborted = true;
        return result;
      }
      if (hooks.permission)
        await this.applyPermission(sessionId, hooks.permission).catch((error) => {
          // A client's request for a session that does not exist gets opencode's own 404 below.
          if (!(request.kind === "forward" && error instanceof OpencodeError && error.status === 404))
            throw error;
        });
      if (request.kind === "prompt") {
        await this.client.call("POST", `/session/${sessionId}/prompt_async`, {
          parts: [{ type: "text", text: request.text }],
        });
      } else {
        const answer = this.forward(request).then((a) => {
          hooks.onAnswer?.(a);
          return a;
        });
        // An error answer means no loop started: the turn ends with it.
        const early = await Promise.race([answer, ended.then(() => null)]);
        if (early && early.status >= 400) {
          result.error = `opencode answered HTTP ${early.status}`;
          finish();
        }
        void answer.then((a) => {
          result.answer = a;
        });
        await ended;
        result.answer = await answer;
      }
      await ended;
      result.done = events.idle && !result.aborted && result.error === null;
      return result;
    } finally {
      this.listeners.delete(listener);
      this.stopWatchers.delete(onStop);
      hooks.signal.removeEventListener("abort", onAbort);
      result.usage = this.options.gateway.detach(this.token);
    }
  }

  /**
   * Sets the session's permission ruleset. PATCH appends to what the session has (each ruleset is
   * complete, so the last one decides); skipped when it is the one this server last applied there.
   */
  private async applyPermission(sessionId: string, rules: PermissionRule[]): Promise<void> {
    const wanted = JSON.stringify(rules);
    if (this.applied.get(sessionId) === wanted) return;
    await this.client.call("PATCH", `/session/${sessionId}`, { permission: rules });
    this.applied.set(sessionId, wanted);
  }

  /** A client's request, sent on as it came (its body and content type), answered whole. */
  private async forward(request: Extract<TurnRequest, { kind: "forward" }>): Promise<ForwardedAnswer> {
    const res = await this.client.fetch(request.pathAndQuery, {
      method: request.method,
      headers: request.headers,
      body: request.body as BodyInit | null,
    });
    return { status: res.status, headers: res.headers, body: new Uint8Array(await res.arrayBuffer()) };
  }

  /** Answers a permission the agent asked for (once, always, reject). */
  async replyPermission(permissionId: string, reply: PermissionReply, message?: string) {
    await this.client.call("POST", `/permission/${encodeURIComponent(permissionId)}/reply`, {
      reply,
      ...(message ? { message } : {}),
    });
  }

  /** Stops the server; resolves once its processes are gone. */
  async stop(): Promise<void> {
    this.events.abort(); // its stream ends with the server: not a drop to reconnect after
    await this.service?.stop();
    await this.cleanUp();
  }

  private async cleanUp(): Promise<void> {
    if (this.stopped) return this.exited;
    this.stopped = true;
    this.events.abort();
    this.options.gateway.revoke(this.token);
    for (const dir of [this.socketDir, this.privateDir])
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    this.markExited();
    for (const watcher of this.stopWatchers) watcher();
  }
}
