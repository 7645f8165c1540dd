// Who is in a session now: fed by the awareness of every room of the session (and by GraphQL-only
// clients announcing themselves), streamed as join/update/leave events on the bus. Disconnects and
// silent clients (awareness timeout; announcements not renewed) become leaves. A session holds a
// bounded number of entries (rooms already cap them per socket; this caps the sum).
//
// Over several instances (a shared bus) each instance lists the entries it feeds (its "local" ones)
// and learns the others' from the session's presence topic: every event names its instance, and each
// instance re-publishes all its local entries of a session (REFRESH) every REFRESH_MS. An instance
// that lists or streams a session keeps a replica of it: it reads the topic from a little more than
// REFRESH_MS back (so every live instance's latest REFRESH is in it) up to a PROBE it publishes itself,
// then follows it live. Entries not refreshed within EXPIRE_MS (their instance was killed) are dropped
// and streamed as leaves by each instance to its own subscribers.
//
// Cost on a shared store: one publish per change, one REFRESH per session with local entries per
// instance every REFRESH_MS, one PROBE when a replica starts.
import { type Bus, CursorExpiredError, topics } from "../bus/bus.ts";
import { PushQueue } from "../bus/queue.ts";
import type { PresenceEntry, PresenceEvent, PresenceRegistry } from "../resolvers/context.ts";

/** Entries one session holds at most; newcomers past it are not listed (those present stay). */
export const MAX_PRESENCE_PER_SESSION = 500;
export const REFRESH_MS = 5000;
const EXPIRE_MS = 3 * REFRESH_MS;
/** A replica nobody lists or streams any more is dropped after this long. */
const REPLICA_IDLE_MS = 60_000;
/** Longest a first listing waits for its replica (the store not answering: local entries only). */
const READY_TIMEOUT_MS = 3000;

/** What the presence topic carries (GraphQL subscribers see only JOIN/UPDATE/LEAVE). */
type Wire =
  | (PresenceEvent & { instance?: string })
  | { kind: "REFRESH"; instance: string; entries: PresenceEntry[] }
  | { kind: "PROBE"; instance: string; probe: string };

interface Remote {
  entry: PresenceEntry;
  instance: string;
  seenAt: number;
}

interface Replica {
  entries: Map<string, Remote>;
  ready: Promise<void>;
  stop: () => void;
  /** Streams of this instance's subscribers: leaves of expired entries go to them. */
  streams: Set<PushQueue<PresenceEvent>>;
  usedAt: number;
}

export interface PlatformPresence extends PresenceRegistry {
  /** Everyone in the session, on every instance. */
  listAll(sessionId: string): Promise<PresenceEntry[]>;
  /** Joins, updates and leaves of the session, live (leaves of killed instances' entries included). */
  events(sessionId: string): AsyncIterableIterator<PresenceEvent>;
  close(): void;
}

export function createPresenceRegistry(bus: Bus, options: { shared?: boolean } = {}): PlatformPresence {
  const instance = crypto.randomUUID();
  const sessions = new Map<string, Map<string, PresenceEntry & { expiresAt?: number }>>();
  const replicas = new Map<string, Replica>();

  const publish = (sessionId: string, event: Wire) =>
    void bus.publish(topics.presence(sessionId), event).catch(() => {}); // logged by the bus

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
      publish(sessionId, { kind: known ? "UPDATE" : "JOIN", entry: next, instance });
    },
    remove(sessionId: string, key: string) {
      const entries = sessions.get(sessionId);
      const known = entries?.get(key);
      if (!entries || !known) return;
      entries.delete(key);
      if (entries.size === 0) sessions.delete(sessionId);
      publish(sessionId, { kind: "LEAVE", entry: known, instance });
    },
    list(sessionId: string): PresenceEntry[] {
      return [...(sessions.get(sessionId)?.values() ?? [])];
    },
  };

  /** Applies one event of the topic to a replica; returns the leave to stream, if any. */
  const apply = (replica: Replica, event: Wire) => {
    if (event.kind === "PROBE" || !event.instance || event.instance === instance) return;
    const now = Date.now();
    const from = event.instance;
    if (event.kind === "REFRESH") {
      const keys = new Set(event.entries.map((e) => e.key));
      for (const [key, remote] of replica.entries)
        if (remote.instance === from && !keys.has(key)) replica.entries.delete(key);
      for (const entry of event.entries.slice(0, MAX_PRESENCE_PER_SESSION))
        replica.entries.set(entry.key, { entry, instance: from, seenAt: now });
    } else if (event.kind === "LEAVE") {
      if (replica.entries.get(event.entry.key)?.instance === from) replica.entries.delete(event.entry.key);
    } else if (replica.entries.size < MAX_PRESENCE_PER_SESSION || replica.entries.has(event.entry.key)) {
      replica.entries.set(event.entry.key, { entry: event.entry, instance: from, seenAt: now });
    }
  };

  /** The replica of a session's other instances' entries (started on first use). */
  const replicaOf = (sessionId: string): Replica => {
    const known = replicas.get(sessionId);
    if (known) {
      known.usedAt = Date.now();
      return known;
    }
    const topic = topics.presence(sessionId);
    const controller = new AbortController();
    const probe = crypto.randomUUID();
    let ready!: () => void;
    const replica: Replica = {
      entries: new Map(),
      ready: new Promise<void>((resolve) => {
        ready = resolve;
      }),
      stop: () => controller.abort(),
      streams: new Set(),
      usedAt: Date.now(),
    };
    replicas.set(sessionId, replica);
    void (async () => {
      for (let attempt = 0; !controller.signal.aborted; attempt++) {
        try {
          // From a little more than one refresh back: every live instance's latest REFRESH is after it.
          const last = await bus.lastId(topic);
          const after = attempt === 0 ? Math.max(1, last - (REFRESH_MS + 2000) * 1000) : last;
          const events = bus.subscribe<Wire>(topic, { after, signal: controller.signal });
          publish(sessionId, { kind: "PROBE", instance, probe });
          for await (const { payload } of events) {
            if (payload.kind === "PROBE" && payload.probe === probe) ready();
            apply(replica, payload);
          }
          return;
        } catch (error) {
          // Past retention (a busy topic trimmed the window): follow from now; refreshes fill it in.
          if (!(error instanceof CursorExpiredError)) await new Promise((r) => setTimeout(r, 500));
        }
      }
    })();
    return replica;
  };

  const listAll = async (sessionId: string): Promise<PresenceEntry[]> => {
    const local = registry.list(sessionId);
    if (!options.shared) return local;
    const replica = replicaOf(sessionId);
    await Promise.race([replica.ready, new Promise((r) => setTimeout(r, READY_TIMEOUT_MS))]);
    const keys = new Set(local.map((e) => e.key));
    const remote = [...replica.entries.values()].map((r) => r.entry).filter((e) => !keys.has(e.key));
    return [...local, ...remote].slice(0, MAX_PRESENCE_PER_SESSION);
  };

  const events = (sessionId: string): AsyncIterableIterator<PresenceEvent> => {
    const replica = options.shared ? replicaOf(sessionId) : null;
    const subscription = bus.subscribe<Wire>(topics.presence(sessionId));
    const queue: PushQueue<PresenceEvent> = new PushQueue(() => {
      replica?.streams.delete(queue);
      if (replica) replica.usedAt = Date.now();
      void subscription.return?.();
    });
    replica?.streams.add(queue);
    void (async () => {
      try {
        for await (const { payload } of subscription)
          if (payload.kind === "JOIN" || payload.kind === "UPDATE" || payload.kind === "LEAVE")
            queue.push({ kind: payload.kind, entry: payload.entry });
        queue.end();
      } catch (error) {
        queue.fail(error);
      }
    })();
    return queue;
  };

  const timer = setInterval(() => {
    const now = Date.now();
    for (const [sessionId, entries] of sessions) {
      for (const [key, entry] of entries)
        if (entry.expiresAt !== undefined && entry.expiresAt < now) registry.remove(sessionId, key);
    }
    if (!options.shared) return;
    for (const [sessionId, replica] of replicas) {
      for (const [key, remote] of replica.entries)
        if (remote.seenAt < now - EXPIRE_MS) {
          replica.entries.delete(key);
          for (const stream of replica.streams) stream.push({ kind: "LEAVE", entry: remote.entry });
        }
      if (replica.streams.size === 0 && now - replica.usedAt > REPLICA_IDLE_MS) {
        replica.stop();
        replicas.delete(sessionId);
      }
    }
  }, 1000);
  (timer as { unref?: () => void }).unref?.();

  // Every live instance says again who it lists, so replicas keep (and newcomers learn) its entries.
  const refresher = options.shared
    ? setInterval(() => {
        for (const [sessionId, entries] of sessions)
          publish(sessionId, { kind: "REFRESH", instance, entries: [...entries.values()] });
      }, REFRESH_MS)
    : undefined;
  (refresher as { unref?: () => void } | undefined)?.unref?.();

  return {
    ...registry,
    listAll,
    events,
    close: () => {
      clearInterval(timer);
      if (refresher) clearInterval(refresher);
      for (const replica of replicas.values()) replica.stop();
      replicas.clear();
    },
  };
}
