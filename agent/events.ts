// The platform's own agent events (what GraphQL streams), translated from opencode's (its /event
// stream for live agents, `opencode run --format json` lines per turn). opencode's raw shapes never
// reach clients.

export type AgentEvent =
  | { type: "text.delta"; partId: string; delta: string }
  | {
      type: "tool.started" | "tool.updated" | "tool.finished";
      callId: string;
      tool: string;
      input: unknown;
      output?: string | null;
      error?: string | null;
      title?: string | null;
    }
  | {
      type: "step.finished";
      tokens: { input?: number; output?: number; reasoning?: number } | null;
      cost: number;
    }
  | {
      /** The agent waits for approval (sessions in ASK mode): answerPermission replies. */
      type: "permission.asked";
      id: string;
      /** What it asks for: "edit", "bash", "webfetch", "external_directory"… */
      permission: string;
      /** What exactly (the command's parts, the file…). */
      patterns: string[];
      /** What an "always" reply would allow from now on. */
      always?: string[];
      /** The tool call waiting for it. */
      callId?: string | null;
      messageId?: string | null;
      /** opencode's details: the command, the file and its diff… (long strings cut). */
      metadata?: Record<string, unknown> | null;
    }
  | {
      type: "permission.replied";
      id: string;
      reply: "once" | "always" | "reject";
      message?: string | null;
      /** Who answered through the platform (null: answered in opencode's own client). */
      userId?: string | null;
    }
  | { type: "error"; message: string }
  | { type: "done"; sessionId: string };

/** Longest string kept in a permission ask's metadata (a diff can be the size of a file). */
const METADATA_STRING_CHARS = 64 * 1024;

const cutStrings = (value: unknown, depth = 0): unknown => {
  if (typeof value === "string")
    return value.length > METADATA_STRING_CHARS ? `${value.slice(0, METADATA_STRING_CHARS)}…` : value;
  if (depth > 4 || value === null || typeof value !== "object") return depth > 4 ? null : value;
  if (Array.isArray(value)) return value.slice(0, 100).map((v) => cutStrings(v, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, cutStrings(v, depth + 1)]));
};

/** The properties of opencode's permission events (as its /event stream sends them). */
export interface OpencodePermissionProperties {
  id?: string;
  requestID?: string;
  permission?: string;
  patterns?: unknown;
  always?: unknown;
  metadata?: Record<string, unknown> | null;
  tool?: { messageID?: string; callID?: string };
  reply?: string;
}

/** opencode's `permission.asked` properties as the platform's event. */
export function permissionAsked(p: OpencodePermissionProperties): AgentEvent {
  return {
    type: "permission.asked",
    id: String(p.id),
    permission: String(p.permission ?? ""),
    patterns: Array.isArray(p.patterns) ? p.patterns.map(String) : [],
    always: Array.isArray(p.always) ? p.always.map(String) : [],
    callId: p.tool?.callID ?? null,
    messageId: p.tool?.messageID ?? null,
    metadata: (cutStrings(p.metadata ?? null) as Record<string, unknown> | null) ?? null,
  };
}

/** opencode's `permission.replied` properties (an answer given in opencode's own client) as the platform's event. */
export function permissionReplied(p: OpencodePermissionProperties): AgentEvent | null {
  const reply = p.reply;
  if (reply !== "once" && reply !== "always" && reply !== "reject") return null;
  return {
    type: "permission.replied",
    id: String(p.requestID ?? p.id),
    reply,
    userId: null,
  };
}

/** Splits a byte stream into lines, however the chunks fall. */
export class LineSplitter {
  private buffer = "";
  private readonly decoder = new TextDecoder();
  push(data: Uint8Array): string[] {
    this.buffer += this.decoder.decode(data, { stream: true });
    const lines = this.buffer.split("\n");
    this.buffer = lines.pop() ?? "";
    return lines;
  }
}
