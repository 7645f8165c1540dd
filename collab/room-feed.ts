// A room's topic on the bus, between instances serving the same room. Each stored update is published
// with its log row id once it is committed (the log stays the source of truth: the bus only makes
// other instances hear of a row sooner), and awareness changes of each instance's sockets ride along.
//
// Loading a room never depends on a live peer answering anything (the failure of Hocuspocus' Redis
// extension, #800): the instance takes the topic's cursor first, then reads the log, then follows the
// topic from that cursor. A row committed after the read was published after it, so after the cursor,
// and arrives; one committed before may arrive too, and applying a Yjs update twice changes nothing.
// If the bus no longer holds the cursor (retention passed, or the connection was cut that long), the
// room catches up from the log and follows again from a fresh cursor: gaps are never skipped.
import { type Bus, CursorExpiredError } from "../bus/bus.ts";

/** The bus topic of a room (one per room name). */
export const roomTopic = (room: string) => `collab:${room}`;

/** What a room's topic carries: an update with its log row id ("u"), or awareness ("a"). */
export interface RoomMessage {
  /** The instance that published it (its own messages are not applied twice). */
  i: string;
  k: "u" | "a";
  /** Base64 of the update (Yjs or awareness). */
  d: string;
  /** The log row ("u" only). */
  id?: number;
}

export const encodeBinary = (data: Uint8Array) => Buffer.from(data).toString("base64");
export const decodeBinary = (text: string) => new Uint8Array(Buffer.from(text, "base64"));

export interface FeedHandlers {
  update(update: Uint8Array, id: number): void;
  awareness(update: Uint8Array): void;
  /** The bus lost the cursor: catch up from the log, then call follow() again with a fresh cursor. */
  lost(): void;
  onError(message: string, error: unknown): void;
}

/**
 * Follows a room's topic after `cursor` (taken before the log was read), applying what other instances
 * publish. Returns a stop function.
 */
export function followRoom(
  bus: Bus,
  room: string,
  instance: string,
  cursor: number,
  handlers: FeedHandlers,
): () => void {
  const events = bus.subscribe<RoomMessage>(roomTopic(room), { after: cursor });
  let stopped = false;
  void (async () => {
    try {
      for await (const { payload } of events) {
        if (payload.i === instance) continue;
        try {
          if (payload.k === "u") handlers.update(decodeBinary(payload.d), payload.id ?? 0);
          else if (payload.k === "a") handlers.awareness(decodeBinary(payload.d));
        } catch (error) {
          // One unreadable message (or one a room refuses) is skipped; the log still holds updates.
          handlers.onError("collab: a room message from another instance was not applied", error);
        }
      }
    } catch (error) {
      if (stopped) return;
      if (!(error instanceof CursorExpiredError))
        handlers.onError("collab: following a room's topic failed; catching up from the log", error);
      handlers.lost();
    }
  })();
  return () => {
    stopped = true;
    void events.return?.();
  };
}
