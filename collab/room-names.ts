// The two room forms of the collaboration endpoint. Anything else is refused before it is loaded.
//   sessions/<sessionId>/chat            the session's shared chat (Y.Array "messages")
//   branches/<branchId>/files/<path>     one text file of a branch's live workspace (Y.Text "content")

export type RoomName =
  | { kind: "chat"; name: string; sessionId: string }
  | { kind: "file"; name: string; branchId: string; path: string };

const SESSION_CHAT = /^sessions\/([a-z0-9_]+)\/chat$/;
const BRANCH_FILE = /^branches\/([a-z0-9_]+)\/files\/(.+)$/;
const MAX_PATH_LENGTH = 1024;

export const ROOM_FORMS = "sessions/<sessionId>/chat or branches/<branchId>/files/<path>";

/** The parsed room, or null for a name outside the two forms (or a path that leaves the workspace). */
export function parseRoomName(name: string): RoomName | null {
  const chat = SESSION_CHAT.exec(name);
  if (chat) return { kind: "chat", name, sessionId: chat[1]! };
  const file = BRANCH_FILE.exec(name);
  if (!file) return null;
  const path = file[2]!;
  const segments = path.split("/");
  if (
    path.length > MAX_PATH_LENGTH ||
    path.includes("\0") ||
    segments.some((s) => s === "" || s === "." || s === "..")
  )
    return null;
  return { kind: "file", name, branchId: file[1]!, path };
}
