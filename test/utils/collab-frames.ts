// Hand-made y-websocket frames over a plain WebSocket, for what a stock client would never send
// (another client's awareness id, 20,001 entries, oversized updates). Encoded with lib0, exactly as
// y-protocols does.
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";

const MESSAGE_SYNC = 0;
const MESSAGE_AWARENESS = 1;
const MESSAGE_AUTH = 2;
const SYNC_UPDATE = 2;

export interface RawCollab {
  ws: WebSocket;
  /** Every message the server sent. */
  messages: Uint8Array[];
  /** Resolves with the first message (the server's sync step 1): the socket is in the room. */
  joined: Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
  send(frame: Uint8Array): void;
}

export function rawCollab(baseUrl: string, room: string, token: string): RawCollab {
  const ws = new WebSocket(
    `${baseUrl.replace(/^http/, "ws")}/collab/${room}?token=${encodeURIComponent(token)}`,
  );
  ws.binaryType = "arraybuffer";
  const messages: Uint8Array[] = [];
  ws.addEventListener("message", (e) => messages.push(new Uint8Array(e.data as ArrayBuffer)));
  const joined = new Promise<void>((resolve) =>
    ws.addEventListener("message", () => resolve(), { once: true }),
  );
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.addEventListener("close", (e) => resolve({ code: e.code, reason: e.reason })),
  );
  return { ws, messages, joined, closed, send: (frame) => ws.send(frame as Uint8Array<ArrayBuffer>) };
}

/** The reason of the y-protocols auth frame "permission denied" among `messages`, if one came. */
export function deniedReason(messages: Uint8Array[]): string | null {
  for (const message of messages) {
    const decoder = decoding.createDecoder(message);
    if (decoding.readVarUint(decoder) !== MESSAGE_AUTH) continue;
    if (decoding.readVarUint(decoder) === 0) return decoding.readVarString(decoder);
  }
  return null;
}

/** An awareness message: entries of [clientId, clock, state as JSON text]. */
export function awarenessFrame(entries: [number, number, string][]): Uint8Array {
  const update = encoding.createEncoder();
  encoding.writeVarUint(update, entries.length);
  for (const [clientId, clock, json] of entries) {
    encoding.writeVarUint(update, clientId);
    encoding.writeVarUint(update, clock);
    encoding.writeVarString(update, json);
  }
  const message = encoding.createEncoder();
  encoding.writeVarUint(message, MESSAGE_AWARENESS);
  encoding.writeVarUint8Array(message, encoding.toUint8Array(update));
  return encoding.toUint8Array(message);
}

/** A sync "update" message carrying one Yjs update. */
export function updateFrame(update: Uint8Array): Uint8Array {
  const message = encoding.createEncoder();
  encoding.writeVarUint(message, MESSAGE_SYNC);
  encoding.writeVarUint(message, SYNC_UPDATE);
  encoding.writeVarUint8Array(message, update);
  return encoding.toUint8Array(message);
}
