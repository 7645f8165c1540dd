// Snapshot.conversation: what the agent had said and done as of a snapshot, read from the opencode
// database the snapshot holds (agent/conversation.ts), through the provider: never the live workspace.
// A snapshot never changes, so its conversation is cached by snapshot id (bounded by weight; lru-cache
// rather than a hand-rolled map, for its size accounting). Reads happen only when the field is asked
// for, at most two at a time, and concurrent requests for one snapshot share a read.
import { LRUCache } from "lru-cache";
import {
  CONVERSATION_FILES,
  CONVERSATION_LIMITS,
  type Conversation,
  conversationWeight,
  readConversation,
} from "../agent/conversation.ts";
import type { SnapshotRow } from "../db/schema.ts";
import { limiter } from "../sandbox/concurrency.ts";
import { FileTooLargeError, SandboxError } from "../sandbox/provider.ts";
import { providerOf } from "./branch.ts";
import type { Context } from "./context.ts";
import { AppError, badInput } from "./errors.ts";

/** Largest opencode database (with its write-ahead log) read. */
export const MAX_CONVERSATION_DB_BYTES = 64 * 1024 * 1024;
const DEFAULT_LAST = 50;
const CACHE_BYTES = 64 * 1024 * 1024;
const PARALLEL_READS = 2;

export interface SnapshotConversation extends Conversation {
  /** Older messages were left out (see totalMessages). */
  truncated: boolean;
}

const NONE = Symbol("no conversation");
const cache = new LRUCache<string, Conversation | typeof NONE>({
  maxSize: CACHE_BYTES,
  sizeCalculation: (value) => conversationWeight(value === NONE ? null : value),
});
const reading = new Map<string, Promise<Conversation | null>>();
const limited = limiter(PARALLEL_READS);

/** The agent's conversation as the snapshot holds it: its latest `last` messages (null: none held). */
export async function snapshotConversation(
  ctx: Context,
  row: SnapshotRow,
  last: number | null | undefined,
): Promise<SnapshotConversation | null> {
  const count = last ?? DEFAULT_LAST;
  if (!Number.isInteger(count) || count < 1 || count > CONVERSATION_LIMITS.messages)
    throw badInput(`last must be 1 to ${CONVERSATION_LIMITS.messages}`, "last");
  const conversation = await conversationOf(ctx, row);
  if (!conversation) return null;
  const messages = conversation.messages.slice(-count);
  return { ...conversation, messages, truncated: conversation.totalMessages > messages.length };
}

async function conversationOf(ctx: Context, row: SnapshotRow): Promise<Conversation | null> {
  const cached = cache.get(row.id);
  if (cached !== undefined) return cached === NONE ? null : cached;
  let pending = reading.get(row.id);
  if (!pending) {
    pending = limited(() => load(ctx, row)).finally(() => reading.delete(row.id));
    reading.set(row.id, pending);
  }
  const conversation = await pending;
  cache.set(row.id, conversation ?? NONE);
  return conversation;
}

async function load(ctx: Context, row: SnapshotRow): Promise<Conversation | null> {
  const provider = await providerOf(ctx, row.sessionId);
  const source = { snapshot: row.providerRef };
  const dir = CONVERSATION_FILES.db.slice(0, CONVERSATION_FILES.db.lastIndexOf("/"));
  let entries: Awaited<ReturnType<typeof provider.listFiles>>;
  try {
    entries = await provider.listFiles(source, dir);
  } catch (error) {
    if (error instanceof SandboxError && error.code === "NOT_FOUND") return null; // no agent ran here
    throw error;
  }
  const sizeOf = (path: string) => entries.find((e) => e.path === path && e.type === "file")?.size;
  const dbSize = sizeOf(CONVERSATION_FILES.db);
  if (dbSize === undefined) return null;
  const total = dbSize + (sizeOf(CONVERSATION_FILES.wal) ?? 0);
  if (total > MAX_CONVERSATION_DB_BYTES)
    throw new AppError(
      "PAYLOAD_TOO_LARGE",
      `The conversation database of this snapshot is too large to read (${total} bytes; at most ${MAX_CONVERSATION_DB_BYTES})`,
    );
  // Bounded reads all the same: the session id file is not listed above, and the workspace's user can
  // make it any size (a read over the bound throws TOO_LARGE; the id is then unknown).
  const maxBytes = MAX_CONVERSATION_DB_BYTES;
  const [db, wal, id] = await Promise.all([
    provider.readFile(source, CONVERSATION_FILES.db, { maxBytes }),
    sizeOf(CONVERSATION_FILES.wal) === undefined
      ? null
      : provider.readFile(source, CONVERSATION_FILES.wal, { maxBytes }),
    provider.readFile(source, CONVERSATION_FILES.sessionId, { maxBytes: 4096 }).catch((error) => {
      if (error instanceof FileTooLargeError) return null;
      throw error;
    }),
  ]);
  if (!db) return null;
  const sessionId = id ? new TextDecoder().decode(id.slice(0, 200)).trim() || null : null;
  try {
    return await readConversation({ db, wal, sessionId });
  } catch (error) {
    // A database the agent left damaged, or one the workspace's user replaced with anything at all.
    ctx.log.warn("could not read a snapshot's conversation", { snapshotId: row.id, error: String(error) });
    throw new AppError("UNAVAILABLE", "The conversation in this snapshot could not be read");
  }
}
