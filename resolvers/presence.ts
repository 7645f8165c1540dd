// Presence over GraphQL: who is in a session now, live join/update/leave events, and announcements
// from GraphQL-only clients (dashboards) that expire unless renewed. Listing and streaming cover every
// instance when the registry can (collab/presence.ts: listAll and events); otherwise this instance's.
import { payloadsOf, topics } from "../bus/bus.ts";
import { requireRole } from "./access.ts";
import {
  type Context,
  type PresenceEntry,
  type PresenceEvent,
  type PresenceRegistry,
  requireScope,
} from "./context.ts";
import { badInput } from "./errors.ts";
import { colorProblem, presenceFieldsProblem } from "./presence-input.ts";

const ANNOUNCE_TTL_MS = 30_000;

/** What a registry over every instance adds (collab/presence.ts). */
interface PlatformPresence extends PresenceRegistry {
  listAll?(sessionId: string): Promise<PresenceEntry[]>;
  events?(sessionId: string): AsyncIterableIterator<PresenceEvent>;
}

export async function sessionPresence(ctx: Context, sessionId: string): Promise<PresenceEntry[]> {
  await requireRole(ctx, sessionId, "VIEWER");
  const presence = ctx.presence as PlatformPresence;
  return presence.listAll ? presence.listAll(sessionId) : presence.list(sessionId);
}

export async function* presenceEvents(ctx: Context, sessionId: string): AsyncGenerator<PresenceEvent> {
  await requireRole(ctx, sessionId, "VIEWER");
  const presence = ctx.presence as PlatformPresence;
  if (!presence.events) return yield* payloadsOf<PresenceEvent>(ctx.bus, topics.presence(sessionId));
  const events = presence.events(sessionId);
  try {
    yield* events;
  } finally {
    await events.return?.();
  }
}

/** A GraphQL client says it is here (and where); repeat within 30 s to stay present. */
export async function announcePresence(
  ctx: Context,
  args: {
    sessionId: string;
    branchId?: string | null;
    file?: string | null;
    cursor?: unknown;
    color?: string | null;
  },
): Promise<PresenceEntry> {
  // Announcing changes what everyone else sees: a mutation like any other, so a read-only API key may
  // not (viewers of the session may: they share awareness in rooms too).
  requireScope(ctx, "write");
  await requireRole(ctx, args.sessionId, "VIEWER");
  // Refused here rather than stored: a 50,000-deep cursor would break every presence query after it.
  const problem = presenceFieldsProblem(args);
  if (problem) throw badInput(problem.message, problem.field);
  const color = colorProblem(args.color);
  if (color) throw badInput(color, "color");
  if (args.branchId !== undefined && args.branchId !== null) {
    // Only a branch of this session: the same answer whether the id exists elsewhere or not at all.
    const branch = await ctx.loaders.branch.load(args.branchId);
    if (branch?.sessionId !== args.sessionId)
      throw badInput("branchId is not a branch of this session", "branchId");
  }
  const user = await ctx.loaders.user.load(ctx.viewer!.userId);
  const now = new Date().toISOString();
  const entry: PresenceEntry = {
    key: `graphql#${ctx.viewer!.userId}`,
    userId: ctx.viewer!.userId,
    name: user?.name ?? user?.email ?? "user",
    color: args.color ?? null,
    branchId: args.branchId ?? null,
    file: args.file ?? null,
    cursor: args.cursor ?? null,
    since: now,
    updatedAt: now,
  };
  ctx.presence.upsert(args.sessionId, entry, ANNOUNCE_TTL_MS);
  return entry;
}
