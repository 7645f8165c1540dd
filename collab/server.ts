// The collaboration endpoint: GET /collab/<room>?token=... upgraded to a WebSocket speaking plain
// y-websocket. The token (JWT, API key or share-link token) is checked and the room authorized before
// any document is loaded; refusals get the y-protocols auth frame and a 44xx close. Rooms load from
// the update log on first join and unload after the last client leaves (after a short grace). Branch
// file rooms are also bound to the file in the branch's workspace (file-buffer.ts).
// A socket lives only as long as its access: it closes when its token expires or is signed out
// everywhere, its API key or share link is revoked or expires (4401), its user is removed or its role
// changes (4403), or its branch or session is deleted (4404).
import { and, eq } from "drizzle-orm";
import { type Bus, topics } from "../bus/bus.ts";
import type { Db } from "../db/client.ts";
import { branches, members, type Role } from "../db/schema.ts";
import type { SandboxFiles } from "../resolvers/branch-runtime.ts";
import type { AudienceTokens, Logger, PresenceRegistry, Viewer } from "../resolvers/context.ts";
import { CredentialWatch } from "../resolvers/credential-watch.ts";
import { AppError } from "../resolvers/errors.ts";
import type { SessionEventPayload } from "../resolvers/events.ts";
import { presenceColor } from "../resolvers/presence-input.ts";
import type { RunCounters } from "../resolvers/run-quota.ts";
import { ShareLinkRefused, verifyShareLink } from "../resolvers/share-links.ts";
import type { BranchFiles } from "./file-buffer.ts";
import { type Peer, permissionDenied, REMOTE, type Room } from "./room.ts";
import { type CollabLimits, DEFAULT_COLLAB_LIMITS } from "./room-limits.ts";
import { parseRoomName, ROOM_FORMS, type RoomName } from "./room-names.ts";
import { type RoomLease, Rooms } from "./rooms.ts";
import { SocketSlots } from "./socket-slots.ts";

/** A socket as the runtime adapter hands it over (see api/runtime/types.ts). */
export interface CollabSocket {
  send(data: Uint8Array): void;
  close(code: number, reason: string): void;
  /** The runtime's topic fan-out, when it has one (see Peer.topics). */
  topics?: Peer["topics"];
}

export interface CollabDeps {
  db: Db;
  bus: Bus;
  presence: PresenceRegistry;
  log: Logger;
  shareLinks: AudienceTokens;
  /** Resolves a bearer credential (JWT or API key); throws for a bad one. */
  authenticate(credential: string): Promise<Viewer>;
  /** The branches' live workspaces, for file rooms. */
  files: BranchFiles;
  graceMs?: number;
  /** Largest file that can be edited live. */
  maxFileBytes?: number;
  /** Longest time an edit waits before it is written to the workspace. */
  fileFlushMs?: number;
  /** Room sizes and sockets per user (collab/room-limits.ts; defaults there). */
  limits?: Partial<CollabLimits>;
  /**
   * The shared counters (api/run-counters.ts: Redis/Upstash, or in memory for one process) that count
   * a user's sockets over every instance. Absent: counted among this instance's sockets only.
   */
  counters?: RunCounters;
  /**
   * Other instances share the bus and the database (REDIS_URL or Upstash): rooms follow each other
   * across instances (collab/rooms.ts). Off for one instance on the in-process bus.
   */
  replicate?: boolean;
}

/** One message of a session's shared chat (the Y.Array "messages" of sessions/<id>/chat). */
export interface ChatMessage {
  author: { kind: "user" | "agent"; id: string | null; name: string };
  text: string;
  /** ISO-8601 time. */
  at: string;
  runId?: string;
}

/** Who a socket acts for (filled in once its token is checked). */
interface Who {
  sessionId: string | null;
  branchId: string | null;
  userId: string | null;
  keyId: string | null;
  /** The member role the socket was opened with (null: a share link). */
  role: Role | null;
  /** The share link the socket was opened with (null: a JWT or an API key). */
  linkId: string | null;
  /** Stops the socket's watches and timers (credential, link expiry). */
  release: (() => void)[];
  socket: CollabSocket;
}

/** setTimeout's longest delay (24.8 days); share links live up to 90 days, so timers re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class CollabServer {
  private readonly rooms: Rooms;
  /** Open sockets and who they act for, so losing access can close them. */
  private readonly sockets = new Map<CollabSocket, Who>();
  private readonly watchers: AsyncIterableIterator<unknown>[];
  private readonly credentials: CredentialWatch;
  private readonly socketSlots: SocketSlots | null;
  /** Session events of sessions with loaded rooms (deleted branches and sessions close their rooms). */
  private readonly sessionWatchers = new Map<
    string,
    { rooms: number; events: AsyncIterableIterator<unknown> }
  >();

  constructor(private readonly deps: CollabDeps) {
    this.rooms = new Rooms({
      db: deps.db,
      bus: deps.bus,
      log: deps.log,
      files: deps.files,
      replicate: deps.replicate ?? false,
      graceMs: deps.graceMs ?? 2000,
      maxFileBytes: deps.maxFileBytes ?? 1024 * 1024,
      fileFlushMs: deps.fileFlushMs ?? 300,
      limits: deps.limits,
      onLoad: (target, sessionId, room) => {
        this.feedPresence(target, sessionId, room);
        this.watchSession(sessionId);
      },
      onUnload: (sessionId) => this.unwatchSession(sessionId),
    });
    this.socketSlots = deps.counters
      ? new SocketSlots({
          counters: deps.counters,
          onError: (message, error) => deps.log.warn(message, { error: String(error) }),
        })
      : null;
    // Dead credentials, revoked links and removed members lose their sockets at once, whichever
    // instance made the change.
    this.credentials = new CredentialWatch(deps.bus, deps.log);
    const access = deps.bus.subscribe<{ sessionId: string; userId: string }>(topics.accessRevoked);
    const links = deps.bus.subscribe<{ sessionId: string; linkId: string }>(topics.shareLinkRevoked);
    this.watchers = [access, links];
    void (async () => {
      for await (const { payload } of access) {
        this.closeWhere(
          (w) => w.sessionId === payload.sessionId && w.userId === payload.userId,
          4403,
          "Access to this session was removed",
        );
        // A share-link socket names no user, so the removed member may hold any of them: they all
        // reconnect, and only a link that is still valid lets them back in.
        this.closeWhere(
          (w) => w.sessionId === payload.sessionId && w.linkId !== null,
          4403,
          "Access to this session changed; reconnect",
        );
      }
    })();
    void (async () => {
      for await (const { payload } of links)
        this.closeWhere((w) => w.linkId === payload.linkId, 4401, "This share link was revoked");
    })();
  }

  private readonly peerWho = new WeakMap<Peer, Who>();

  /** Awareness changes of a room become presence joins, updates and leaves of its session. */
  private feedPresence(target: RoomName, sessionId: string, room: Room) {
    const { name } = target;
    // In a file room, the branch and file are the room's unless the client says otherwise.
    const roomBranch = target.kind === "file" ? target.branchId : null;
    const roomFile = target.kind === "file" ? target.path : null;
    room.awareness.on(
      "change",
      (
        { added, updated, removed }: { added: number[]; updated: number[]; removed: number[] },
        origin: unknown,
      ) => {
        // Another instance's sockets: that instance lists them.
        if (origin === REMOTE) return;
        const who = this.peerWho.get(origin as Peer);
        const now = new Date().toISOString();
        for (const id of [...added, ...updated]) {
          const state = room.awareness.getStates().get(id) as Record<string, unknown> | undefined;
          if (!state) continue;
          const user = (state.user ?? {}) as Record<string, unknown>;
          this.deps.presence.upsert(sessionId, {
            key: `${name}#${id}`,
            userId: who?.userId ?? null,
            name: typeof user.name === "string" ? user.name : "anonymous",
            // Shown as presence only when it is a plain color (any text stays in the room's awareness).
            color: presenceColor(user.color),
            branchId: typeof state.branchId === "string" ? state.branchId : roomBranch,
            file: typeof state.file === "string" ? state.file : roomFile,
            cursor: state.cursor ?? null,
            since: now,
            updatedAt: now,
          });
        }
        for (const id of removed) this.deps.presence.remove(sessionId, `${name}#${id}`);
      },
    );
  }

  /**
   * One signed-in user holds at most limits.socketsPerUser sockets (this one included), over every
   * instance when the counters are shared. Returns what gives the socket's slot back.
   */
  private async takeSocketSlot(who: Who): Promise<() => void> {
    const max = this.deps.limits?.socketsPerUser ?? DEFAULT_COLLAB_LIMITS.socketsPerUser;
    const { userId } = who;
    if (userId === null) return () => {};
    const localCount = () => {
      let open = 0;
      for (const other of this.sockets.values()) if (other.userId === userId) open++;
      return open;
    };
    const release = this.socketSlots
      ? await this.socketSlots.acquire(userId, max, localCount)
      : localCount() > max
        ? null
        : () => {};
    if (!release)
      throw new AppError("RATE_LIMITED", `Too many open collaboration sockets (at most ${max} per user)`);
    return release;
  }

  private closeWhere(match: (who: Who) => boolean, code: number, reason: string) {
    for (const [socket, who] of this.sockets) if (match(who)) socket.close(code, reason);
  }

  /** The socket of `who`, while it is open. */
  private socketOf(who: Who): CollabSocket | undefined {
    return this.sockets.has(who.socket) ? who.socket : undefined;
  }

  /** Closes the socket of `who` (4401) at `at`, ms since epoch. */
  private closeAt(who: Who, at: number, reason: () => string) {
    if (!this.socketOf(who)) return; // closed while its token was being checked
    const ms = at - Date.now();
    const timer = setTimeout(
      () =>
        ms > MAX_TIMER_MS ? this.closeAt(who, at, reason) : this.closeWhere((w) => w === who, 4401, reason()),
      Math.max(0, Math.min(ms, MAX_TIMER_MS)),
    );
    who.release.push(() => clearTimeout(timer));
  }

  /** The session a room belongs to; NOT_FOUND for a name outside the forms or a missing branch. */
  private async sessionOfRoom(room: RoomName | null, raw: string): Promise<string> {
    if (!room) throw new AppError("NOT_FOUND", `Unknown room "${raw.slice(0, 200)}": use ${ROOM_FORMS}`);
    if (room.kind === "chat") return room.sessionId;
    const [branch] = await this.deps.db
      .select({ sessionId: branches.sessionId })
      .from(branches)
      .where(eq(branches.id, room.branchId));
    if (!branch) throw new AppError("NOT_FOUND", "No such room");
    return branch.sessionId;
  }

  /**
   * Decides the role a token gives in the room's session; throws AppError when it gives none. The
   * token is checked before the room is looked up, so a bad token learns nothing about rooms.
   */
  private async roleFor(
    token: string | null,
    target: RoomName | null,
    raw: string,
    who: Who,
  ): Promise<{ role: Role; canWrite: boolean }> {
    if (!token)
      throw new AppError("UNAUTHENTICATED", "Pass ?token= (a JWT, an API key or a share-link token)");
    let viewer: Viewer | null = null;
    try {
      viewer = await this.deps.authenticate(token);
    } catch (error) {
      // Not an access credential: maybe a share link for this very session, checked against its row.
      const link = await verifyShareLink(this.deps, token).catch((refused: unknown) => {
        if (!(refused instanceof ShareLinkRefused)) throw refused;
        return refused;
      });
      if (link instanceof ShareLinkRefused && link.reason === "invalid")
        throw error instanceof AppError ? error : new AppError("UNAUTHENTICATED", "Invalid token");
      who.sessionId = await this.sessionOfRoom(target, raw);
      // A link's row goes with its session: a deleted session's link finds no room.
      if (link instanceof ShareLinkRefused && link.reason === "unknown")
        throw new AppError("NOT_FOUND", "No such room");
      if (link instanceof ShareLinkRefused)
        throw new AppError("UNAUTHENTICATED", link.message, { reason: link.reason });
      if (link.sessionId !== who.sessionId) throw new AppError("NOT_FOUND", "No such room");
      who.linkId = link.id;
      this.closeAt(who, link.expiresAt.getTime(), () => "This share link has expired");
      return { role: link.role, canWrite: link.role === "EDITOR" };
    }
    const sessionId = await this.sessionOfRoom(target, raw);
    who.sessionId = sessionId;
    who.userId = viewer.userId;
    who.keyId = viewer.credential.kind === "apiKey" ? viewer.credential.keyId : null;
    const socket = this.socketOf(who);
    if (socket) {
      who.release.push(
        this.credentials.watch(viewer, (error) => socket.close(4401, error.message.slice(0, 120))),
      );
    }
    const [member] = await this.deps.db
      .select({ role: members.role })
      .from(members)
      .where(and(eq(members.sessionId, sessionId), eq(members.userId, viewer.userId)));
    if (!member) throw new AppError("NOT_FOUND", "No such room");
    who.role = member.role;
    // A read-only API key reads, whatever its owner's role.
    const keyMayWrite = viewer.credential.kind !== "apiKey" || viewer.credential.scopes.includes("write");
    return { role: member.role, canWrite: member.role !== "VIEWER" && keyMayWrite };
  }

  private watchSession(sessionId: string) {
    const watched = this.sessionWatchers.get(sessionId);
    if (watched) {
      watched.rooms++;
      return;
    }
    const events = this.deps.bus.subscribe<SessionEventPayload>(topics.session(sessionId));
    this.sessionWatchers.set(sessionId, { rooms: 1, events });
    void (async () => {
      for await (const { payload } of events) {
        if (payload.kind === "SESSION_DELETED")
          this.closeWhere((w) => w.sessionId === sessionId, 4404, "The session was deleted");
        else if (payload.kind === "BRANCH_DELETED")
          this.closeWhere((w) => w.branchId === payload.branchId, 4404, "The branch was deleted");
        else if (payload.kind === "MEMBER_CHANGED" && payload.userId)
          void this.recheckRole(sessionId, payload.userId);
      }
    })();
  }

  /** A member's role changed: their sockets opened with another role reconnect with the new one. */
  private async recheckRole(sessionId: string, userId: string) {
    const [member] = await this.deps.db
      .select({ role: members.role })
      .from(members)
      .where(and(eq(members.sessionId, sessionId), eq(members.userId, userId)))
      .catch(() => []);
    this.closeWhere(
      (w) => w.sessionId === sessionId && w.userId === userId && w.role !== (member?.role ?? null),
      4403,
      "Your role in this session changed; reconnect",
    );
  }

  private unwatchSession(sessionId: string) {
    const watched = this.sessionWatchers.get(sessionId);
    if (!watched || --watched.rooms > 0) return;
    this.sessionWatchers.delete(sessionId);
    void watched.events.return?.();
  }

  /** Before queued work on a branch (its owner calls): what people typed reaches the workspace. */
  flushBranch(branchId: string, files: SandboxFiles): Promise<void> {
    return this.rooms.flushBranch(branchId, files);
  }

  /** After queued work on a branch (its owner calls): what it changed reaches open editors. */
  syncBranch(branchId: string, files: SandboxFiles): Promise<void> {
    return this.rooms.syncBranch(branchId, files);
  }

  /** Starts serving one upgraded socket for `room` (the path after /collab/). */
  open(socket: CollabSocket, roomName: string, token: string | null) {
    const target = parseRoomName(roomName);
    const who: Who = {
      sessionId: null,
      branchId: target?.kind === "file" ? target.branchId : null,
      userId: null,
      keyId: null,
      role: null,
      linkId: null,
      release: [],
      socket,
    };
    this.sockets.set(socket, who);
    const queue: Uint8Array[] = [];
    let peer: (Peer & { room: Room }) | null = null;
    let lease: RoomLease | undefined;
    let closed = false;

    const ready = (async () => {
      const { canWrite } = await this.roleFor(token, target, roomName, who);
      if (closed) return;
      const giveBack = await this.takeSocketSlot(who);
      // Closed while the slot was being taken: its release already ran.
      if (closed) return giveBack();
      who.release.push(giveBack);
      lease = this.rooms.acquire(target!, who.sessionId!, { socket: true });
      const room = await lease.room;
      if (closed) return;
      peer = {
        room,
        canWrite,
        userId: who.userId,
        send: (data) => socket.send(data),
        close: (code, reason) => socket.close(code, reason),
        topics: socket.topics,
      };
      this.peerWho.set(peer, who);
      room.join(peer);
      for (const data of queue.splice(0)) room.receive(peer, data); // a bad one lands in .catch below
    })().catch((error) => {
      const appError =
        error instanceof AppError ? error : new AppError("INTERNAL", "Could not open the room");
      if (!(error instanceof AppError)) this.deps.log.error("collab open failed", { error: String(error) });
      socket.send(permissionDenied(appError.message));
      socket.close(appError.closeCode, appError.message.slice(0, 120));
    });

    return {
      message: (data: Uint8Array) => {
        if (!peer) return void queue.push(data);
        try {
          peer.room.receive(peer, data);
        } catch (error) {
          // A malformed frame: this socket goes, the room and the server stay.
          this.deps.log.warn("collab frame rejected", { room: roomName, error: String(error) });
          socket.close(4400, "Malformed y-websocket message");
        }
      },
      close: () => {
        closed = true;
        this.sockets.delete(socket);
        for (const release of who.release.splice(0)) release();
        void ready.then(() => {
          if (peer) peer.room.leave(peer);
          lease?.release();
        });
      },
    };
  }

  /**
   * Appends a message to a session's shared chat from the server side (no socket): connected clients
   * see it at once, and it is stored like any other update. The room unloads again when idle.
   */
  async appendChat(sessionId: string, message: ChatMessage): Promise<void> {
    const name = `sessions/${sessionId}/chat`;
    const lease = this.rooms.acquire({ kind: "chat", name, sessionId }, sessionId);
    try {
      (await lease.room).appendChat(message);
    } finally {
      lease.release();
    }
  }

  /** Rooms currently in memory (tests check that nothing leaks). */
  get loadedRooms(): number {
    return this.rooms.size;
  }

  /** Collaboration sockets open on this instance now (joined or still being checked). */
  get openSockets(): number {
    return this.sockets.size;
  }

  async close(): Promise<void> {
    for (const watcher of this.watchers) await watcher.return?.();
    await this.credentials.close();
    for (const { events } of this.sessionWatchers.values()) await events.return?.();
    this.sessionWatchers.clear();
    for (const socket of [...this.sockets.keys()]) socket.close(1001, "Server shutting down");
    this.socketSlots?.close();
    await this.rooms.close();
  }
}
