// The collaboration endpoint: GET /collab/<room>?token=... upgraded to a WebSocket speaking plain
// y-websocket. The token (JWT, API key or share-link token) is checked and the room authorized before
// any document is loaded; refusals get the y-protocols auth frame and a 44xx close. Rooms load from
// the update log on first join and unload after the last client leaves (after a short grace).
import { and, eq } from "drizzle-orm";
import { type Bus, topics } from "../bus/bus.ts";
import type { Db } from "../db/client.ts";
import { members, type Role } from "../db/schema.ts";
import type { AudienceTokens, Logger, PresenceRegistry, Viewer } from "../resolvers/context.ts";
import { AppError } from "../resolvers/errors.ts";
import { UpdateLog } from "./persistence.ts";
import { type Peer, permissionDenied, Room } from "./room.ts";

/** A socket as the runtime adapter hands it over (see api/runtime/types.ts). */
export interface CollabSocket {
  send(data: Uint8Array): void;
  close(code: number, reason: string): void;
}

export interface CollabDeps {
  db: Db;
  bus: Bus;
  presence: PresenceRegistry;
  log: Logger;
  shareLinks: AudienceTokens;
  /** Resolves a bearer credential (JWT or API key); throws for a bad one. */
  authenticate(credential: string): Promise<Viewer>;
  graceMs?: number;
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
  userId: string | null;
  keyId: string | null;
}

interface LoadedRoom {
  room: Promise<Room>;
  unload?: ReturnType<typeof setTimeout>;
}

const SESSION_CHAT = /^sessions\/([a-z0-9_]+)\/chat$/;
const SHARE_AUDIENCE = "opencode.cloud/share";

export class CollabServer {
  private readonly rooms = new Map<string, LoadedRoom>();
  /** Open sockets and who they act for, so losing access can close them. */
  private readonly sockets = new Map<CollabSocket, Who>();
  private readonly log: UpdateLog;
  private readonly watchers: AsyncIterableIterator<unknown>[];

  constructor(private readonly deps: CollabDeps) {
    this.log = new UpdateLog(deps.db, (error) =>
      deps.log.error("collab persistence failed", { error: String(error) }),
    );
    // Revoked keys and removed members lose their sockets at once, whichever instance made the change.
    const keys = deps.bus.subscribe<{ keyId: string }>(topics.revokedCredentials);
    const access = deps.bus.subscribe<{ sessionId: string; userId: string }>(topics.accessRevoked);
    this.watchers = [keys, access];
    void (async () => {
      for await (const { payload } of keys)
        this.closeWhere((w) => w.keyId === payload.keyId, 4401, "API key revoked");
    })();
    void (async () => {
      for await (const { payload } of access) {
        this.closeWhere(
          (w) => w.sessionId === payload.sessionId && w.userId === payload.userId,
          4403,
          "Access to this session was removed",
        );
      }
    })();
  }

  private readonly peerWho = new WeakMap<Peer, Who>();

  /** Awareness changes of a room become presence joins, updates and leaves of its session. */
  private feedPresence(name: string, room: Room) {
    const sessionId = CollabServer.sessionOf(name);
    if (!sessionId) return;
    room.awareness.on(
      "change",
      (
        { added, updated, removed }: { added: number[]; updated: number[]; removed: number[] },
        origin: unknown,
      ) => {
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
            color: typeof user.color === "string" ? user.color : null,
            branchId: typeof state.branchId === "string" ? state.branchId : null,
            file: typeof state.file === "string" ? state.file : null,
            cursor: state.cursor ?? null,
            since: now,
            updatedAt: now,
          });
        }
        for (const id of removed) this.deps.presence.remove(sessionId, `${name}#${id}`);
      },
    );
  }

  private closeWhere(match: (who: Who) => boolean, code: number, reason: string) {
    for (const [socket, who] of this.sockets) if (match(who)) socket.close(code, reason);
  }

  /** The session a room belongs to, or null for a name outside the supported forms. */
  static sessionOf(room: string): string | null {
    return SESSION_CHAT.exec(room)?.[1] ?? null;
  }

  /** Decides the role a token gives in a session; throws AppError when it gives none. */
  private async roleFor(token: string | null, sessionId: string, who: Who): Promise<Role> {
    if (!token)
      throw new AppError("UNAUTHENTICATED", "Pass ?token= (a JWT, an API key or a share-link token)");
    let viewer: Viewer | null = null;
    try {
      viewer = await this.deps.authenticate(token);
    } catch (error) {
      // Not an access credential: maybe a share link for this very session.
      const claims = await this.deps.shareLinks.verify(SHARE_AUDIENCE, token).catch(() => null);
      if (claims && claims.sid === sessionId && (claims.role === "EDITOR" || claims.role === "VIEWER"))
        return claims.role;
      throw error instanceof AppError ? error : new AppError("UNAUTHENTICATED", "Invalid token");
    }
    who.userId = viewer.userId;
    who.keyId = viewer.credential.kind === "apiKey" ? viewer.credential.keyId : null;
    const [member] = await this.deps.db
      .select({ role: members.role })
      .from(members)
      .where(and(eq(members.sessionId, sessionId), eq(members.userId, viewer.userId)));
    if (!member) throw new AppError("NOT_FOUND", "No such room");
    return member.role;
  }

  private async roomFor(name: string): Promise<Room> {
    const loaded = this.rooms.get(name);
    if (loaded) {
      if (loaded.unload) clearTimeout(loaded.unload);
      loaded.unload = undefined;
      return loaded.room;
    }
    const room = (async () => {
      const created = new Room(name, (update) => this.log.append(name, update));
      this.feedPresence(name, created);
      const stored = await this.log.load(name);
      if (stored) created.load(stored);
      return created;
    })();
    this.rooms.set(name, { room });
    return room;
  }

  private scheduleUnload(name: string, room: Room) {
    const loaded = this.rooms.get(name);
    if (!loaded || room.size > 0) return;
    loaded.unload = setTimeout(async () => {
      if (room.size > 0) return;
      await this.log.flush();
      if (room.size > 0 || this.rooms.get(name) !== loaded) return;
      this.rooms.delete(name);
      room.destroy();
    }, this.deps.graceMs ?? 2000);
  }

  /** Starts serving one upgraded socket for `room` (the path after /collab/). */
  open(socket: CollabSocket, roomName: string, token: string | null) {
    const who: Who = { sessionId: CollabServer.sessionOf(roomName), userId: null, keyId: null };
    this.sockets.set(socket, who);
    const queue: Uint8Array[] = [];
    let peer: (Peer & { room: Room }) | null = null;
    let closed = false;

    const ready = (async () => {
      const sessionId = CollabServer.sessionOf(roomName);
      if (!sessionId)
        throw new AppError("NOT_FOUND", `Unknown room "${roomName}": use sessions/<sessionId>/chat`);
      const role = await this.roleFor(token, sessionId, who);
      if (closed) return;
      const room = await this.roomFor(roomName);
      if (closed) return this.scheduleUnload(roomName, room);
      peer = {
        room,
        canWrite: role !== "VIEWER",
        send: (data) => socket.send(data),
        close: (code, reason) => socket.close(code, reason),
      };
      this.peerWho.set(peer, who);
      room.join(peer);
      for (const data of queue.splice(0)) room.receive(peer, data);
    })().catch((error) => {
      const appError =
        error instanceof AppError ? error : new AppError("INTERNAL", "Could not open the room");
      if (!(error instanceof AppError)) this.deps.log.error("collab open failed", { error: String(error) });
      socket.send(permissionDenied(appError.message));
      socket.close(appError.closeCode, appError.message.slice(0, 120));
    });

    return {
      message: (data: Uint8Array) => {
        if (peer) peer.room.receive(peer, data);
        else queue.push(data);
      },
      close: () => {
        closed = true;
        this.sockets.delete(socket);
        void ready.then(() => {
          if (!peer) return;
          peer.room.leave(peer);
          this.scheduleUnload(roomName, peer.room);
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
    const room = await this.roomFor(name);
    room.doc.transact(() => {
      room.doc.getArray<ChatMessage>("messages").push([message]);
    }, "server");
    this.scheduleUnload(name, room);
  }

  /** Rooms currently in memory (tests check that nothing leaks). */
  get loadedRooms(): number {
    return this.rooms.size;
  }

  async close(): Promise<void> {
    for (const watcher of this.watchers) await watcher.return?.();
    for (const socket of [...this.sockets.keys()]) socket.close(1001, "Server shutting down");
    await this.log.close();
    for (const [name, loaded] of this.rooms) {
      if (loaded.unload) clearTimeout(loaded.unload);
      (await loaded.room).destroy();
      this.rooms.delete(name);
    }
  }
}
