// The agent's conversation as a snapshot holds it: opencode keeps its sessions, messages and parts in
// an SQLite database inside the workspace (AGENT_STATE_DIR/xdg/data/opencode/opencode.db, most of it in
// the -wal file next to it). Given those files' bytes, this opens a private temporary copy with
// @libsql/client (a file: URL; the same on Bun and Deno) and maps the latest messages to plain objects.
// Every read is bounded: the last MAX_MESSAGES messages, and text, tool input and output cut at fixed
// sizes inside SQL, so a huge tool output is never loaded whole.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { AGENT_STATE_DIR } from "./opencode-binary.ts";

/** Workspace paths of opencode's database and of the id of the session the platform drives. */
export const CONVERSATION_FILES = {
  db: `${AGENT_STATE_DIR}/xdg/data/opencode/opencode.db`,
  wal: `${AGENT_STATE_DIR}/xdg/data/opencode/opencode.db-wal`,
  sessionId: `${AGENT_STATE_DIR}/occ/session-id`,
} as const;

export const CONVERSATION_LIMITS = {
  /** Messages read (the latest ones). */
  messages: 200,
  /** Characters of a message's text (its text parts joined). */
  textChars: 32 * 1024,
  /** Characters of a tool call's input (as JSON; larger inputs are left out, the title stays). */
  inputChars: 16 * 1024,
  /** Characters of a tool call's output or error. */
  outputChars: 16 * 1024,
  /** Tool calls kept per message. */
  toolCalls: 100,
} as const;

export interface ConversationToolCall {
  callId: string;
  tool: string;
  /** pending | running | completed | error */
  status: string;
  input: unknown;
  inputTruncated: boolean;
  title: string | null;
  output: string | null;
  outputTruncated: boolean;
  error: string | null;
  startedAt: number | null;
  finishedAt: number | null;
}

export interface ConversationMessage {
  id: string;
  role: "USER" | "ASSISTANT";
  text: string;
  textTruncated: boolean;
  toolCalls: ConversationToolCall[];
  createdAt: number;
  completedAt: number | null;
  tokens: { input: number; output: number; reasoning: number; cacheRead: number; cacheWrite: number } | null;
  cost: number | null;
  model: string | null;
  /** Why the model stopped (stop, tool-calls, length…). */
  finish: string | null;
  error: string | null;
}

export interface Conversation {
  /** opencode's own session id. */
  sessionId: string;
  title: string | null;
  /** The latest messages, oldest first. */
  messages: ConversationMessage[];
  totalMessages: number;
}

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

/**
 * Reads the conversation from opencode's database files (null when they hold no session). `sessionId`
 * is the session the platform drives; without it (or when it is gone), the latest top-level session.
 */
export async function readConversation(files: {
  db: Uint8Array;
  wal: Uint8Array | null;
  sessionId: string | null;
}): Promise<Conversation | null> {
  const dir = await mkdtemp(join(tmpdir(), "occ-conversation-"));
  const path = join(dir, "opencode.db");
  await writeFile(path, files.db, { mode: 0o600 });
  // SQLite finds the write-ahead log by name and replays its committed frames when it opens the copy.
  if (files.wal) await writeFile(`${path}-wal`, files.wal, { mode: 0o600 });
  const client = createClient({ url: `file:${path}` });
  try {
    const session = await pickSession(client, files.sessionId);
    if (!session) return null;
    return { ...session, ...(await readMessages(client, session.sessionId)) };
  } finally {
    client.close();
    await rm(dir, { recursive: true, force: true });
  }
}

type Client = ReturnType<typeof createClient>;

async function pickSession(
  client: Client,
  wanted: string | null,
): Promise<{ sessionId: string; title: string | null } | null> {
  // The workspace is the user's: its database may be anything. Only real tables are read (a view
  // could run any query), and nothing in its schema may call functions with side effects.
  await client.execute("PRAGMA trusted_schema = OFF");
  const tables = await client.execute(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('session', 'message', 'part')",
  );
  if (tables.rows.length < 3) return null;
  const rows = wanted
    ? (await client.execute({ sql: "SELECT id, title FROM session WHERE id = ?", args: [wanted] })).rows
    : [];
  const row =
    rows[0] ??
    (
      await client.execute(
        "SELECT id, title FROM session WHERE parent_id IS NULL ORDER BY time_updated DESC, id DESC LIMIT 1",
      )
    ).rows[0];
  return row ? { sessionId: String(row.id), title: str(row.title) } : null;
}

async function readMessages(
  client: Client,
  sessionId: string,
): Promise<{ messages: ConversationMessage[]; totalMessages: number }> {
  const L = CONVERSATION_LIMITS;
  const total = await client.execute({
    sql: "SELECT count(*) AS n FROM message WHERE session_id = ?",
    args: [sessionId],
  });
  // Only small fields of a message's data are read (never its whole JSON).
  const messageRows = (
    await client.execute({
      sql: `SELECT id, time_created,
              json_extract(data, '$.role') AS role,
              json_extract(data, '$.time.created') AS created,
              json_extract(data, '$.time.completed') AS completed,
              json_extract(data, '$.tokens.input') AS t_input,
              json_extract(data, '$.tokens.output') AS t_output,
              json_extract(data, '$.tokens.reasoning') AS t_reasoning,
              json_extract(data, '$.tokens.cache.read') AS t_cache_read,
              json_extract(data, '$.tokens.cache.write') AS t_cache_write,
              json_extract(data, '$.cost') AS cost,
              coalesce(json_extract(data, '$.modelID'), json_extract(data, '$.model.modelID')) AS model,
              json_extract(data, '$.finish') AS finish,
              substr(coalesce(json_extract(data, '$.error.data.message'), json_extract(data, '$.error.name')), 1, ${L.outputChars}) AS error
            FROM message WHERE session_id = ?
            ORDER BY time_created DESC, id DESC LIMIT ${L.messages}`,
      args: [sessionId],
    })
  ).rows.reverse();
  const messages = new Map<string, ConversationMessage>();
  for (const m of messageRows) {
    const assistant = m.role === "assistant";
    messages.set(String(m.id), {
      id: String(m.id),
      role: assistant ? "ASSISTANT" : "USER",
      text: "",
      textTruncated: false,
      toolCalls: [],
      createdAt: num(m.created) ?? Number(m.time_created),
      completedAt: num(m.completed),
      tokens:
        assistant && m.t_input !== null
          ? {
              input: Number(m.t_input ?? 0),
              output: Number(m.t_output ?? 0),
              reasoning: Number(m.t_reasoning ?? 0),
              cacheRead: Number(m.t_cache_read ?? 0),
              cacheWrite: Number(m.t_cache_write ?? 0),
            }
          : null,
      cost: assistant ? num(m.cost) : null,
      model: str(m.model),
      finish: str(m.finish),
      error: str(m.error),
    });
  }
  if (messages.size === 0) return { messages: [], totalMessages: Number(total.rows[0]?.n ?? 0) };

  const first = messageRows[0]!;
  const partRows = (
    await client.execute({
      sql: `SELECT p.message_id,
              json_extract(p.data, '$.type') AS type,
              coalesce(json_extract(p.data, '$.synthetic'), 0) AS synthetic,
              substr(json_extract(p.data, '$.text'), 1, ${L.textChars + 1}) AS text,
              json_extract(p.data, '$.tool') AS tool,
              json_extract(p.data, '$.callID') AS call_id,
              json_extract(p.data, '$.state.status') AS status,
              CASE WHEN length(json_extract(p.data, '$.state.input')) <= ${L.inputChars}
                THEN json_extract(p.data, '$.state.input') END AS input,
              json_type(p.data, '$.state.input') AS input_type,
              substr(json_extract(p.data, '$.state.title'), 1, 1000) AS title,
              substr(json_extract(p.data, '$.state.output'), 1, ${L.outputChars + 1}) AS output,
              substr(json_extract(p.data, '$.state.error'), 1, ${L.outputChars + 1}) AS error,
              json_extract(p.data, '$.state.time.start') AS started,
              json_extract(p.data, '$.state.time.end') AS ended
            FROM part p JOIN message m ON m.id = p.message_id
            WHERE p.session_id = ? AND (m.time_created > ? OR (m.time_created = ? AND m.id >= ?))
              AND json_extract(p.data, '$.type') IN ('text', 'tool')
            ORDER BY p.time_created, p.id`,
      args: [sessionId, first.time_created ?? 0, first.time_created ?? 0, String(first.id)],
    })
  ).rows;
  for (const p of partRows) {
    const message = messages.get(String(p.message_id));
    if (!message) continue;
    if (p.type === "text") {
      if (Number(p.synthetic)) continue; // opencode's own additions, not what anyone wrote
      const text = message.text + String(p.text ?? "");
      message.textTruncated ||= text.length > L.textChars;
      message.text = text.slice(0, L.textChars);
    } else if (message.toolCalls.length < L.toolCalls) {
      const inputType = str(p.input_type);
      const tooLarge = inputType !== null && p.input === null;
      let input: unknown = null;
      if (p.input !== null && p.input !== undefined) {
        // json_extract gives objects and arrays as JSON text, scalars as values.
        input = inputType === "object" || inputType === "array" ? JSON.parse(String(p.input)) : p.input;
      }
      const output = str(p.output);
      const error = str(p.error);
      message.toolCalls.push({
        callId: String(p.call_id ?? ""),
        tool: String(p.tool ?? "unknown"),
        status: String(p.status ?? "pending"),
        input,
        inputTruncated: tooLarge,
        title: str(p.title),
        output: output === null ? null : output.slice(0, L.outputChars),
        outputTruncated: (output?.length ?? 0) > L.outputChars || (error?.length ?? 0) > L.outputChars,
        error: error === null ? null : error.slice(0, L.outputChars),
        startedAt: num(p.started),
        finishedAt: num(p.ended),
      });
    }
  }
  return { messages: [...messages.values()], totalMessages: Number(total.rows[0]?.n ?? 0) };
}

/** Rough memory a conversation holds (what a cache of them weighs). */
export function conversationWeight(conversation: Conversation | null): number {
  if (!conversation) return 64;
  let n = 256;
  for (const m of conversation.messages) {
    n += 256 + m.text.length * 2;
    for (const t of m.toolCalls)
      n +=
        256 +
        (t.output?.length ?? 0) * 2 +
        (t.error?.length ?? 0) * 2 +
        (t.input ? JSON.stringify(t.input).length * 2 : 0);
  }
  return n;
}
