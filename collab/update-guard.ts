// Keeps a room's document within its RoomLimits. Every client update is checked before it is
// applied, so a refused one is never applied, relayed or stored. Checks are cheap on the common path:
// upper bounds of the document and text sizes are kept up to date from each applied update, and the
// exact (whole-document) measure runs only when a bound says an update might not fit.
import * as Y from "yjs";
import { valueDepth } from "../resolvers/presence-input.ts";
import type { RoomLimits } from "./room-limits.ts";

/** Nesting allowed in a value a client inserts (lib0 decodes values recursively, as do clients). */
const MAX_VALUE_DEPTH = 32;

export interface Refusal {
  /** 4413 (too large) or 4400 (a value no client should send). */
  code: number;
  reason: string;
}

type Decoded = ReturnType<typeof Y.decodeUpdate>;

export class UpdateGuard {
  /** An upper bound of the encoded document's size (null: not measured yet). */
  private docBound: number | null = null;
  /** File rooms: an upper bound of the UTF-8 size of "content" (null: not measured yet). */
  private textBound: number | null = null;

  constructor(
    private readonly doc: Y.Doc,
    readonly limits: RoomLimits,
  ) {
    // Whatever changes the document (clients, the server, stored state) moves the bounds up.
    doc.on("update", (update: Uint8Array) => {
      if (this.docBound !== null) this.docBound += update.byteLength;
      if (this.textBound !== null) this.textBound += insertedTextBytes(Y.decodeUpdate(update));
    });
  }

  /** Why a client's update may not be applied, or null. Throws on a malformed update. */
  check(update: Uint8Array): Refusal | null {
    const { maxDocBytes, maxTextBytes, maxValueBytes } = this.limits;
    if (update.byteLength > maxDocBytes)
      return tooLarge(`Update of ${update.byteLength} bytes; this room takes at most ${maxDocBytes}`);
    const decoded = Y.decodeUpdate(update);
    const bad = valueProblem(decoded, maxValueBytes);
    if (bad) return bad;
    if (!decoded.structs.some((s) => s instanceof Y.Item)) return null; // deletions only: never grows

    if (this.docBound === null || this.docBound + update.byteLength > maxDocBytes) {
      this.docBound = Y.encodeStateAsUpdate(this.doc).byteLength;
      // Only what the document lacks can grow it (a reconnecting client resends some of what we have).
      const growth =
        this.docBound + update.byteLength > maxDocBytes
          ? Y.diffUpdate(update, Y.encodeStateVector(this.doc)).byteLength
          : update.byteLength;
      if (this.docBound + growth > maxDocBytes)
        return tooLarge(`This room's document would pass its limit of ${maxDocBytes} bytes`);
    }

    if (maxTextBytes !== undefined) {
      const inserted = insertedTextBytes(decoded);
      if (inserted > 0 && (this.textBound === null || this.textBound + inserted > maxTextBytes)) {
        this.textBound = textBytes(this.doc);
        // An update that also deletes (a replaced selection) may still fit: measure it on a copy.
        if (
          this.textBound + inserted > maxTextBytes &&
          (decoded.ds.clients.size === 0 || textBytesAfter(this.doc, update) > maxTextBytes)
        )
          return tooLarge(`The file would pass its limit of ${maxTextBytes} bytes`);
      }
    }
    return null;
  }

  /** Chat rooms, after any change: the oldest messages go until the count and the size fit. */
  fit(): void {
    const { maxMessages, maxDocBytes } = this.limits;
    if (maxMessages === undefined) return;
    const messages = this.doc.getArray("messages");
    if (messages.length > maxMessages)
      this.doc.transact(() => messages.delete(0, messages.length - maxMessages), "server");
    // Clients cannot pass the size (refused first); the server's own messages can, and trim instead.
    if (this.docBound !== null && this.docBound <= maxDocBytes) return;
    let size = Y.encodeStateAsUpdate(this.doc).byteLength;
    while (size > maxDocBytes && messages.length > 1) {
      this.doc.transact(() => messages.delete(0, Math.ceil(messages.length / 4)), "server");
      size = Y.encodeStateAsUpdate(this.doc).byteLength;
    }
    this.docBound = size;
  }
}

const tooLarge = (reason: string): Refusal => ({ code: 4413, reason });

/** UTF-8 bytes of every string the update inserts (into any text: an upper bound for "content"). */
function insertedTextBytes(decoded: Decoded): number {
  let bytes = 0;
  for (const s of decoded.structs)
    if (s instanceof Y.Item && s.content instanceof Y.ContentString)
      bytes += Buffer.byteLength(s.content.str);
  return bytes;
}

/** UTF-8 size of the file's text, counting updates still waiting for a missing part as text. */
function textBytes(doc: Y.Doc): number {
  return (
    Buffer.byteLength(doc.getText("content").toString()) + (doc.store.pendingStructs?.update.byteLength ?? 0)
  );
}

function textBytesAfter(doc: Y.Doc, update: Uint8Array): number {
  const copy = new Y.Doc();
  try {
    Y.applyUpdate(copy, Y.encodeStateAsUpdate(doc));
    Y.applyUpdate(copy, update);
    return textBytes(copy);
  } finally {
    copy.destroy();
  }
}

/** A value no room should take: too deep anywhere, or (with a limit) too large for one message. */
function valueProblem(decoded: Decoded, maxValueBytes: number | undefined): Refusal | null {
  for (const s of decoded.structs) {
    if (!(s instanceof Y.Item)) continue;
    const c = s.content;
    let values: unknown[] = [];
    if (c instanceof Y.ContentAny || c instanceof Y.ContentJSON) values = c.arr;
    else if (c instanceof Y.ContentEmbed) values = [c.embed];
    else if (c instanceof Y.ContentFormat) values = [c.value];
    else if (c instanceof Y.ContentBinary || c instanceof Y.ContentString) {
      const size = c instanceof Y.ContentBinary ? c.content.byteLength : Buffer.byteLength(c.str);
      if (maxValueBytes !== undefined && size > maxValueBytes)
        return tooLarge(`A value of ${size} bytes; at most ${maxValueBytes} in this room`);
    }
    for (const value of values) {
      if (valueDepth(value, MAX_VALUE_DEPTH) > MAX_VALUE_DEPTH)
        return { code: 4400, reason: `A value nests deeper than ${MAX_VALUE_DEPTH} levels` };
      if (maxValueBytes === undefined) continue;
      let size: number;
      try {
        size = Buffer.byteLength(JSON.stringify(value) ?? "");
      } catch {
        return { code: 4400, reason: "A value that is not JSON (chat messages are JSON)" };
      }
      if (size > maxValueBytes)
        return tooLarge(`A message of ${size} bytes; at most ${maxValueBytes} in this room`);
    }
  }
  return null;
}
