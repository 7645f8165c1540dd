// One collaboration room: a Y.Doc, its awareness and its connections, speaking the standard
// y-websocket protocol (y-protocols sync steps 1/2 and updates, awareness, query-awareness, auth).
// Viewers sync and share awareness, but every document update they send is dropped: never applied,
// relayed or stored. Writers' updates are checked against the room's limits first (update-guard.ts):
// one that would pass them closes its socket (4413, the reason also in the auth frame) and is never
// applied, relayed or stored. Awareness frames are filtered first too (awareness-filter.ts): a socket
// sets only the few client ids it introduced, with states that pass the presence checks.
// Across instances: an accepted update is persisted first (the update log is the source of truth) and
// only then relayed to the room's other sockets; updates and awareness that other instances accepted
// arrive through applyRemote/applyRemoteAwareness and are relayed here without being stored again.
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import * as awarenessProtocol from "y-protocols/awareness";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { AwarenessOwners, filterAwarenessUpdate } from "./awareness-filter.ts";
import { DEFAULT_COLLAB_LIMITS, MESSAGE_SLACK_BYTES, type RoomLimits } from "./room-limits.ts";
import { type Refusal, UpdateGuard } from "./update-guard.ts";

export const MESSAGE_SYNC = 0;
export const MESSAGE_AWARENESS = 1;
export const MESSAGE_AUTH = 2;
export const MESSAGE_QUERY_AWARENESS = 3;

export interface Peer {
  send(data: Uint8Array): void;
  close(code: number, reason: string): void;
  canWrite: boolean;
  /** The signed-in user the socket acts for (null: a share-link guest); awareness ids are theirs. */
  userId?: string | null;
  /** The runtime's topic fan-out (Bun), when it has one: subscribe on join, publish to the others. */
  topics?: {
    subscribe(topic: string): void;
    unsubscribe(topic: string): void;
    /** Sends to every subscriber but this peer. */
    publish(topic: string, data: Uint8Array): void;
  };
}

/** The origin of changes another instance accepted (already stored; relayed, never stored again). */
export const REMOTE = "remote";

export interface RoomOptions {
  /** Stores an update a writer (or the server) made; resolves once it is committed. */
  persist(update: Uint8Array): Promise<unknown>;
  /** Awareness changes of this instance's sockets, for the other instances (coalesced per tick). */
  shareAwareness?(update: Uint8Array): void;
  limits?: RoomLimits;
  /** Told why frames of a peer were dropped or refused (for a log line). */
  onReject?(reason: string): void;
}

/** Awareness changes of local sockets are gathered this long before they are shared (cursor moves). */
const AWARENESS_SHARE_MS = 20;

export class Room {
  readonly doc = new Y.Doc();
  readonly awareness = new awarenessProtocol.Awareness(this.doc);
  private readonly peers = new Set<Peer>();
  /** Which peer introduced each awareness client id (nobody may take the server's own). */
  private readonly owners = new AwarenessOwners<Peer>(
    new Set([this.doc.clientID]),
    (peer) => peer.userId ?? null,
  );
  /** Peers refused for passing a limit: the rest of what they send is ignored until they close. */
  private readonly refused = new WeakSet<Peer>();
  private readonly guard: UpdateGuard;
  private readonly onReject: (reason: string) => void;
  /** Awareness client ids changed by local sockets and not shared with other instances yet. */
  private readonly unshared = new Set<number>();
  private shareTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly name: string,
    private readonly options: RoomOptions,
  ) {
    this.guard = new UpdateGuard(
      this.doc,
      options.limits ?? { maxDocBytes: DEFAULT_COLLAB_LIMITS.chatBytes },
    );
    this.onReject = options.onReject ?? (() => {});
    // Nobody owns the server's own awareness state.
    this.awareness.setLocalState(null);
    this.doc.on("update", (update: Uint8Array, origin: unknown) => {
      if (origin === "load") return;
      const message = encodeMessage(MESSAGE_SYNC, (e) => syncProtocol.writeUpdate(e, update));
      if (origin === REMOTE) return this.toOthers(null, message);
      // Relayed once stored, in the order accepted (commits resolve in order).
      void options.persist(update).then(() => this.toOthers(origin, message));
    });
    this.awareness.on(
      "update",
      (
        { added, updated, removed }: { added: number[]; updated: number[]; removed: number[] },
        origin: unknown,
      ) => {
        const changed = [...added, ...updated, ...removed];
        // Other instances time out the states they were told of themselves.
        if (origin !== REMOTE && origin !== "timeout") this.share(changed);
        const message = encodeMessage(MESSAGE_AWARENESS, (e) =>
          encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed)),
        );
        this.toOthers(origin, message);
        if (this.peers.has(origin as Peer)) (origin as Peer).send(message); // back to its sender too
      },
    );
  }

  private share(clients: number[]) {
    if (!this.options.shareAwareness) return;
    for (const id of clients) this.unshared.add(id);
    this.shareTimer ??= setTimeout(() => {
      this.shareTimer = undefined;
      const ids = [...this.unshared];
      this.unshared.clear();
      if (ids.length > 0)
        this.options.shareAwareness?.(awarenessProtocol.encodeAwarenessUpdate(this.awareness, ids));
    }, AWARENESS_SHARE_MS);
  }

  /** An update another instance accepted and stored: applied and relayed to every socket here. */
  applyRemote(update: Uint8Array): void {
    Y.applyUpdate(this.doc, update, REMOTE);
  }

  /** Awareness of another instance's sockets (already filtered there). */
  applyRemoteAwareness(update: Uint8Array): void {
    awarenessProtocol.applyAwarenessUpdate(this.awareness, update, REMOTE);
  }

  /** The runtime topic this room's sockets subscribe to. */
  private get topic(): string {
    return `collab:${this.name}`;
  }

  /** Every peer but `origin` (a peer, or the server's own change): one publish where topics exist. */
  private toOthers(origin: unknown, message: Uint8Array): void {
    // A sender that left meanwhile (relays wait for the store) is simply not among the peers.
    const from = this.peers.has(origin as Peer) ? (origin as Peer) : null;
    if (from?.topics) from.topics.publish(this.topic, message);
    else for (const peer of this.peers) if (peer !== from) peer.send(message);
  }

  get size(): number {
    return this.peers.size;
  }

  /** Applies stored state without echoing it back to storage. */
  load(update: Uint8Array): void {
    Y.applyUpdate(this.doc, update, "load");
  }

  join(peer: Peer): void {
    this.peers.add(peer);
    peer.topics?.subscribe(this.topic);
    peer.send(encodeMessage(MESSAGE_SYNC, (e) => syncProtocol.writeSyncStep1(e, this.doc)));
    const states = [...this.awareness.getStates().keys()];
    if (states.length > 0) {
      peer.send(
        encodeMessage(MESSAGE_AWARENESS, (e) =>
          encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(this.awareness, states)),
        ),
      );
    }
  }

  /** Handles one WebSocket message, which may hold several protocol frames. */
  receive(peer: Peer, data: Uint8Array): void {
    if (this.refused.has(peer)) return;
    const { maxDocBytes } = this.guard.limits;
    if (data.byteLength > maxDocBytes + MESSAGE_SLACK_BYTES) {
      this.refuse(peer, {
        code: 4413,
        reason: `Message of ${data.byteLength} bytes; this room takes at most ${maxDocBytes}`,
      });
      return;
    }
    const decoder = decoding.createDecoder(data);
    while (decoding.hasContent(decoder)) {
      const type = decoding.readVarUint(decoder);
      switch (type) {
        case MESSAGE_SYNC: {
          const reply = encoding.createEncoder();
          encoding.writeVarUint(reply, MESSAGE_SYNC);
          const syncType = decoding.readVarUint(decoder);
          if (syncType === syncProtocol.messageYjsSyncStep1) {
            syncProtocol.readSyncStep1(decoder, reply, this.doc);
          } else {
            const update = decoding.readVarUint8Array(decoder);
            // Step 2 and updates change the document: only writers may, within the room's limits.
            if (peer.canWrite) {
              const refusal = this.guard.check(update);
              if (refusal) {
                this.refuse(peer, refusal);
                return; // the rest of the message goes with the socket
              }
              Y.applyUpdate(this.doc, update, peer);
              this.guard.fit();
            }
          }
          if (encoding.length(reply) > 1) peer.send(encoding.toUint8Array(reply));
          break;
        }
        case MESSAGE_AWARENESS: {
          const { update, dropped } = filterAwarenessUpdate(
            decoding.readVarUint8Array(decoder),
            peer,
            this.owners,
            this.awareness,
          );
          if (dropped.length > 0) this.onReject(`awareness entries dropped: ${dropped.join("; ")}`);
          if (update) awarenessProtocol.applyAwarenessUpdate(this.awareness, update, peer);
          break;
        }
        case MESSAGE_QUERY_AWARENESS:
          peer.send(
            encodeMessage(MESSAGE_AWARENESS, (e) =>
              encoding.writeVarUint8Array(
                e,
                awarenessProtocol.encodeAwarenessUpdate(this.awareness, [
                  ...this.awareness.getStates().keys(),
                ]),
              ),
            ),
          );
          break;
        case MESSAGE_AUTH:
          decoding.readVarUint(decoder); // clients do not authenticate in-band here; skip the frame
          decoding.readVarString(decoder);
          break;
        default:
          return; // unknown frame type: the rest of the message cannot be framed
      }
    }
  }

  leave(peer: Peer): void {
    this.peers.delete(peer);
    peer.topics?.unsubscribe(this.topic);
    const controlled = this.owners.release(peer).filter((id) => this.awareness.getStates().has(id));
    if (controlled.length > 0) awarenessProtocol.removeAwarenessStates(this.awareness, controlled, null);
  }

  /** Closes a peer that passed a limit: the reason in the auth frame, then the close code. */
  private refuse(peer: Peer, { code, reason }: Refusal): void {
    this.refused.add(peer);
    this.onReject(`refused (${code}): ${reason}`);
    peer.send(permissionDenied(reason));
    peer.close(code, reason.slice(0, 120));
  }

  /**
   * Appends a message to a chat room's "messages" from the server (no socket). A message over the
   * room's message size has its text shortened; past the count or the size, the oldest messages go.
   */
  appendChat(message: { text: string }): void {
    const { maxValueBytes } = this.guard.limits;
    const fitted =
      maxValueBytes === undefined ? message : { ...message, text: fitText(message, maxValueBytes) };
    this.doc.transact(() => {
      this.doc.getArray("messages").push([fitted]);
    }, "server");
    this.guard.fit();
  }

  /** Refuses every connection (auth frame, then close), e.g. when the room can no longer be served. */
  closeAll(code: number, reason: string, frame: Uint8Array): void {
    for (const peer of [...this.peers]) {
      peer.send(frame);
      peer.close(code, reason);
    }
  }

  destroy(): void {
    if (this.shareTimer) clearTimeout(this.shareTimer);
    this.awareness.destroy();
    this.doc.destroy();
  }
}

/** The text of a message shortened so the whole message fits in `maxBytes` as JSON. */
function fitText(message: { text: string }, maxBytes: number): string {
  const size = Buffer.byteLength(JSON.stringify(message));
  if (size <= maxBytes) return message.text;
  const marker = " [… shortened]";
  // Characters can take up to 6 bytes as escaped JSON: cut generously, then check.
  let keep = Math.max(0, message.text.length - Math.ceil((size - maxBytes) * 1.1) - marker.length);
  const cut = () => {
    const high = keep > 0 && /[\uD800-\uDBFF]/.test(message.text[keep - 1]!); // never half a pair
    return `${message.text.slice(0, high ? keep - 1 : keep)}${marker}`;
  };
  let text = cut();
  while (keep > 0 && Buffer.byteLength(JSON.stringify({ ...message, text })) > maxBytes) {
    keep = Math.floor(keep * 0.9);
    text = cut();
  }
  return text;
}

export function encodeMessage(type: number, write: (encoder: encoding.Encoder) => void): Uint8Array {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, type);
  write(encoder);
  return encoding.toUint8Array(encoder);
}

/** The y-protocols auth frame that tells a stock client it was refused. */
export function permissionDenied(reason: string): Uint8Array {
  return encodeMessage(MESSAGE_AUTH, (e) => {
    encoding.writeVarUint(e, 0); // permission denied
    encoding.writeVarString(e, reason);
  });
}
