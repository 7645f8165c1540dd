// One collaboration room: a Y.Doc, its awareness and its connections, speaking the standard
// y-websocket protocol (y-protocols sync steps 1/2 and updates, awareness, query-awareness, auth).
// Viewers sync and share awareness, but every document update they send is dropped: never applied,
// relayed or stored.
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import * as awarenessProtocol from "y-protocols/awareness";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";

export const MESSAGE_SYNC = 0;
export const MESSAGE_AWARENESS = 1;
export const MESSAGE_AUTH = 2;
export const MESSAGE_QUERY_AWARENESS = 3;

export interface Peer {
  send(data: Uint8Array): void;
  close(code: number, reason: string): void;
  canWrite: boolean;
  /** The runtime's topic fan-out (Bun), when it has one: subscribe on join, publish to the others. */
  topics?: {
    subscribe(topic: string): void;
    unsubscribe(topic: string): void;
    /** Sends to every subscriber but this peer. */
    publish(topic: string, data: Uint8Array): void;
  };
}

export class Room {
  readonly doc = new Y.Doc();
  readonly awareness = new awarenessProtocol.Awareness(this.doc);
  private readonly peers = new Map<Peer, Set<number>>();

  constructor(
    readonly name: string,
    /** Called with every update applied to the document (from a writer, or loaded state). */
    private readonly onUpdate: (update: Uint8Array) => void,
  ) {
    // Nobody owns the server's own awareness state.
    this.awareness.setLocalState(null);
    this.doc.on("update", (update: Uint8Array, origin: unknown) => {
      if (origin === "load") return;
      this.onUpdate(update);
      const message = encodeMessage(MESSAGE_SYNC, (e) => syncProtocol.writeUpdate(e, update));
      this.toOthers(origin, message);
    });
    this.awareness.on(
      "update",
      (
        { added, updated, removed }: { added: number[]; updated: number[]; removed: number[] },
        origin: unknown,
      ) => {
        const changed = [...added, ...updated, ...removed];
        const controlled = this.peers.get(origin as Peer);
        if (controlled) {
          for (const id of added) controlled.add(id);
          for (const id of removed) controlled.delete(id);
        }
        const message = encodeMessage(MESSAGE_AWARENESS, (e) =>
          encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed)),
        );
        this.toOthers(origin, message);
        if (controlled) (origin as Peer).send(message); // awareness goes back to its sender too
      },
    );
  }

  /** The runtime topic this room's sockets subscribe to. */
  private get topic(): string {
    return `collab:${this.name}`;
  }

  /** Every peer but `origin` (a peer, or the server's own change): one publish where topics exist. */
  private toOthers(origin: unknown, message: Uint8Array): void {
    const from = this.peers.has(origin as Peer) ? (origin as Peer) : null;
    if (from?.topics) from.topics.publish(this.topic, message);
    else for (const peer of this.peers.keys()) if (peer !== from) peer.send(message);
  }

  get size(): number {
    return this.peers.size;
  }

  /** Applies stored state without echoing it back to storage. */
  load(update: Uint8Array): void {
    Y.applyUpdate(this.doc, update, "load");
  }

  join(peer: Peer): void {
    this.peers.set(peer, new Set());
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
            // Step 2 and updates change the document: only writers may.
            if (peer.canWrite) Y.applyUpdate(this.doc, update, peer);
          }
          if (encoding.length(reply) > 1) peer.send(encoding.toUint8Array(reply));
          break;
        }
        case MESSAGE_AWARENESS:
          awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), peer);
          break;
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
    const controlled = this.peers.get(peer);
    this.peers.delete(peer);
    peer.topics?.unsubscribe(this.topic);
    if (controlled && controlled.size > 0)
      awarenessProtocol.removeAwarenessStates(this.awareness, [...controlled], null);
  }

  /** Refuses every connection (auth frame, then close), e.g. when the room can no longer be served. */
  closeAll(code: number, reason: string, frame: Uint8Array): void {
    for (const peer of [...this.peers.keys()]) {
      peer.send(frame);
      peer.close(code, reason);
    }
  }

  destroy(): void {
    this.awareness.destroy();
    this.doc.destroy();
  }
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
