// Who is in a session now: fed by the awareness of every room of the session (and by GraphQL-only
// clients announcing themselves), streamed as join/update/leave events on the bus. Disconnects and
// silent clients (awareness timeout; announcements not renewed) become leaves. A session holds a
// bounded number of entries (rooms already cap them per socket; this caps the sum).
import { type Bus, topics } from "../bus/bus.ts";
import type { PresenceEntry, PresenceEvent, PresenceRegistry } from "../resolvers/context.ts";

/** Entries one session holds at most; newcomers past it are not listed (those present stay). */
export const MAX_PRESENCE_PER_SESSION = 500;

export function createPresenceRegistry(bus: Bus): PresenceRegistry & { close(): void } {
  const sessions = new Map<string, Map<string, PresenceEntry & { expiresAt?: number }>>();

  const publish = (sessionId: string, event: PresenceEvent) =>
    void bus.publish(topics.presence(sessionId), event);

  const registry = {
    upsert(sessionId: string, entry: PresenceEntry, ttlMs?: number) {
      const entries = sessions.get(sessionId) ?? new Map<string, PresenceEntry & { expiresAt?: number }>();
      sessions.set(sessionId, entries);
      const known = entries.get(entry.key);
      if (!known && entries.size >= MAX_PRESENCE_PER_SESSION) return;
      const next = {
        ...entry,
        since: known?.since ?? entry.since,
        ...(ttlMs ? { expiresAt: Date.now() + ttlMs } : {}),
      };
      entries.set(entry.key, next);
      publish(sessionId, { kind: known ? "UPDATE" : "JOIN", entry: next });
    },
    remove(sessionId: string, key: string) {
      const entries = sessions.get(sessionId);
      const known = entries?.get(key);
      if (!entries || !known) return;
      entries.delete(key);
      if (entries.size === 0) sessions.delete(sessionId);
      publish(sessionId, { kind: "LEAVE", entry: known });
    },
    list(sessionId: string): PresenceEntry[] {
      return [...(sessions.get(sessionId)?.values() ?? [])];
    },
  };

  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const [sessionId, entries] of sessions) {
      for (const [key, entry] of entries)
        if (entry.expiresAt !== undefined && entry.expiresAt < now) registry.remove(sessionId, key);
    }
  }, 1000);
  (sweeper as { unref?: () => void }).unref?.();
  return { ...registry, close: () => clearInterval(sweeper) };
}
