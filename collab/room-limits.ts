// How large a collaboration room may grow, per room kind. A chat room is bounded by its encoded size,
// its message count (oldest messages are trimmed) and the size of one message; a file room by its
// encoded size and by the file it edits (COLLAB_MAX_FILE_BYTES, as when it opens). The largest
// document is also the largest update or WebSocket message a room takes: a client that reconnects
// may need to send nearly all of it once, and nothing larger can ever fit.

export interface CollabLimits {
  /** Encoded size of a chat room's document. */
  chatBytes: number;
  /** Messages a chat keeps; past this, the oldest are trimmed. */
  chatMessages: number;
  /** One chat message (any single value a client inserts into a chat room), as JSON. */
  chatMessageBytes: number;
  /** Encoded size of a file room's document (the text plus Yjs's history of it). */
  fileRoomBytes: number;
  /** Open collaboration sockets per signed-in user, over all rooms. */
  socketsPerUser: number;
}

export const DEFAULT_COLLAB_LIMITS: CollabLimits = {
  chatBytes: 4 * 1024 * 1024,
  chatMessages: 5000,
  chatMessageBytes: 64 * 1024,
  fileRoomBytes: 4 * 1024 * 1024 + 64 * 1024,
  socketsPerUser: 100,
};

/** What one room enforces (see UpdateGuard). */
export interface RoomLimits {
  /** Largest encoded document, and so the largest update a client may send. */
  maxDocBytes: number;
  /** File rooms: the largest UTF-8 size of the Y.Text "content" (the file). */
  maxTextBytes?: number;
  /** Chat rooms: messages kept in the Y.Array "messages" (older ones are trimmed). */
  maxMessages?: number;
  /** Chat rooms: the largest single value (a message) a client may insert, as JSON. */
  maxValueBytes?: number;
}

/** Framing around an update (message type, length prefixes) and awareness that may share a message. */
export const MESSAGE_SLACK_BYTES = 64 * 1024;

export function roomLimits(
  kind: "chat" | "file",
  limits: Partial<CollabLimits> = {},
  maxFileBytes = 1024 * 1024,
): RoomLimits {
  const all = { ...DEFAULT_COLLAB_LIMITS, ...limits };
  if (kind === "chat")
    return {
      maxDocBytes: all.chatBytes,
      maxMessages: all.chatMessages,
      maxValueBytes: all.chatMessageBytes,
    };
  return { maxDocBytes: Math.max(all.fileRoomBytes, maxFileBytes), maxTextBytes: maxFileBytes };
}
