// The bus over Redis Streams, for REDIS_URL (redis.ts) and Upstash (upstash.ts): one stream per topic,
// bounded (approximate MAXLEN, and a time to live renewed by each publish), ids mapped to numbers
// (stream-ids.ts). A process tails every topic it has subscribers for through one reader (the "tail":
// one blocking XREAD connection with Redis, wake-ups and XREAD polls with Upstash) and fans entries out
// to its local subscribers. A new subscriber starts at its cursor (or at the topic's latest id),
// catches up with XRANGE to where the tail is, and joins it; events the tail delivers meanwhile wait in
// its backlog, and every subscriber drops ids it has already seen, so nothing is missed or repeated.
// The tail resumes from its own cursors after a reconnect, so a dropped connection loses nothing
// either. A cursor older than what the stream retains fails with CursorExpiredError.
import { type Bus, type BusEvent, CursorExpiredError, type SubscribeOptions } from "./bus.ts";
import { PushQueue } from "./queue.ts";
import type { RedisCommands } from "./redis-commands.ts";
import { compareIds, fromNumber, type StreamId, toNumber } from "./stream-ids.ts";
import { LAST_ID, PUBLISH, RANGE } from "./stream-scripts.ts";

export interface StreamEntry {
  id: StreamId;
  payload: string;
  /** The id of the entry before it in the stream ("0-0": the first). */
  prev: StreamId;
}

/** Reads new entries of many streams at once. */
export interface StreamTail {
  /** Entries after the given positions, waiting a bounded time for some; may resolve with none. */
  read(positions: Map<string, StreamId>): Promise<Map<string, StreamEntry[]>>;
  /** The set of streams changed: a pending read should return soon. */
  interrupt(): void;
  /** Something is known to be waiting in this stream: read it soon (tails that cannot block). */
  poke?(key: string): void;
  close(): Promise<void>;
}

export interface StreamBusOptions {
  commands: RedisCommands;
  tail: StreamTail;
  /** Prefix of every key (e.g. "occ:"); streams are `${prefix}bus:${topic}`. */
  prefix: string;
  /** Entries a topic keeps at least (trimmed approximately beyond). */
  maxLen: number;
  /** How long a topic lives after its last publish, and so the oldest cursor that can resume. */
  retentionMs: number;
  /** A channel to PUBLISH each new entry's stream key to (the Upstash tail's wake-up). */
  wakeChannel?: string;
  onError?: (message: string, fields: Record<string, unknown>) => void;
}

export interface StreamBus extends Bus {
  /** Topics tailed and local subscribers now (leak checks, metrics). */
  stats(): { topics: number; subscribers: number };
}

/** Entries read per XRANGE page when catching up. */
const PAGE = 500;

interface Subscriber {
  queue: PushQueue<BusEvent>;
  /** The last id delivered (or the start cursor): only later ids are delivered. */
  last: number;
  /** Events the tail delivered while this subscriber was still catching up; null once live. */
  backlog: BusEvent[] | null;
  /** It gave a cursor to resume after (and so is owed every event after it). */
  resumed: boolean;
}

interface Feed {
  topic: string;
  key: string;
  /** Where the tail reads from; null until a subscriber has caught up and set it. */
  cursor: StreamId | null;
  subscribers: Set<Subscriber>;
  /** waitFor calls: resolved once the tail has delivered up to their id. */
  waiters: { id: number; resolve: () => void }[];
}

type RawEntry = [string, string[]];

export function parseEntry([id, fields]: RawEntry): StreamEntry {
  let payload = "null";
  let prev = "0-0";
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] === "p") payload = fields[i + 1]!;
    else if (fields[i] === "v") prev = fields[i + 1]!;
  }
  return { id, payload, prev };
}

/**
 * An XREAD reply by stream key: [[key, [[id, fields], ...]], ...] (RESP2), or a RESP3 map flattened
 * to [key, entries, key, entries, ...]; null when nothing arrived.
 */
export function parseXRead(reply: unknown): Map<string, StreamEntry[]> {
  const out = new Map<string, StreamEntry[]>();
  if (!Array.isArray(reply)) return out;
  if (typeof reply[0] === "string") {
    for (let i = 0; i < reply.length; i += 2)
      out.set(reply[i] as string, (reply[i + 1] as RawEntry[]).map(parseEntry));
  } else {
    for (const [key, entries] of reply as [string, RawEntry[]][]) out.set(key, entries.map(parseEntry));
  }
  return out;
}

/** The stream key of a topic. */
export const streamKey = (prefix: string, topic: string) => `${prefix}bus:${topic}`;

export function createStreamBus(options: StreamBusOptions): StreamBus {
  const { commands, tail, prefix, maxLen, retentionMs } = options;
  const onError = options.onError ?? (() => {});
  const feeds = new Map<string, Feed>();
  const keyOf = (topic: string) => streamKey(prefix, topic);
  let closed = false;
  let idle: (() => void) | undefined;

  const wakeLoop = () => {
    const resume = idle;
    idle = undefined;
    resume?.();
    tail.interrupt();
  };

  const toEvent = (feed: Feed, entry: StreamEntry): BusEvent | null => {
    try {
      return { id: toNumber(entry.id), topic: feed.topic, payload: JSON.parse(entry.payload) };
    } catch (error) {
      onError("bus: unreadable entry skipped", { topic: feed.topic, id: entry.id, error: String(error) });
      return null;
    }
  };

  const deliverTo = (subscriber: Subscriber, event: BusEvent) => {
    if (event.id <= subscriber.last) return;
    subscriber.last = event.id;
    subscriber.queue.push(event);
  };

  /** Entries the tail read for a feed: checked for a gap, then fanned out. */
  const deliver = (feed: Feed, entries: StreamEntry[]) => {
    const first = entries[0]!;
    if (feed.cursor !== null && compareIds(first.prev, feed.cursor) > 0) {
      // Entries were trimmed before the tail read them (it was cut off longer than the retention).
      // Subscribers that resumed from a cursor were promised every event: they fail. Live-only ones
      // (watchers that cannot resume anyway) go on from here.
      const error = new CursorExpiredError(feed.topic, toNumber(feed.cursor));
      onError("bus: a topic's tail fell behind its retention; events were missed", { topic: feed.topic });
      for (const subscriber of [...feed.subscribers]) if (subscriber.resumed) subscriber.queue.fail(error);
    }
    for (const entry of entries) {
      if (feed.cursor !== null && compareIds(entry.id, feed.cursor) <= 0) continue;
      feed.cursor = entry.id;
      const event = toEvent(feed, entry);
      if (!event) continue;
      for (const subscriber of feed.subscribers) {
        if (subscriber.backlog) subscriber.backlog.push(event);
        else deliverTo(subscriber, event);
      }
    }
    if (feed.waiters.length > 0 && feed.cursor !== null) {
      const reached = toNumber(feed.cursor);
      feed.waiters = feed.waiters.filter((waiter) => (waiter.id <= reached ? void waiter.resolve() : true));
    }
  };

  /**
   * Reads what a new subscriber missed, from its start to where the tail is (or to the end of the
   * stream when nothing tails the topic yet, and then starts the tail there), then makes it live.
   */
  const catchUp = async (feed: Feed, subscriber: Subscriber, start: StreamId) => {
    let position = start;
    for (;;) {
      const target = feed.cursor;
      if (target !== null && compareIds(position, target) >= 0) break;
      const [gap, raw] = (await commands.script(RANGE, [feed.key], [position, PAGE, retentionMs])) as [
        number,
        RawEntry[],
      ];
      if (subscriber.queue.ended) return;
      if (Number(gap) === 1) throw new CursorExpiredError(feed.topic, toNumber(start));
      let reachedTail = false;
      for (const entry of raw.map(parseEntry)) {
        if (feed.cursor !== null && compareIds(entry.id, feed.cursor) > 0) {
          reachedTail = true;
          break;
        }
        const event = toEvent(feed, entry);
        if (event) deliverTo(subscriber, event);
        position = entry.id;
      }
      if (reachedTail || raw.length < PAGE) {
        // Caught up: with nothing tailing the topic yet, the tail starts where this read ended.
        if (feed.cursor === null) {
          feed.cursor = position;
          wakeLoop();
        }
        break;
      }
    }
    const backlog = subscriber.backlog ?? [];
    subscriber.backlog = null;
    for (const event of backlog) deliverTo(subscriber, event);
  };

  const loop = async () => {
    let failures = 0;
    while (!closed) {
      const tailed = [...feeds.values()].filter((feed) => feed.cursor !== null);
      if (tailed.length === 0) {
        await new Promise<void>((resolve) => {
          idle = resolve;
        });
        continue;
      }
      let result: Map<string, StreamEntry[]>;
      try {
        result = await tail.read(new Map(tailed.map((feed) => [feed.key, feed.cursor!])));
        failures = 0;
      } catch (error) {
        if (closed) break;
        failures++;
        if (failures === 1 || failures % 50 === 0)
          onError("bus: reading topics failed; retrying", { error: String(error), failures });
        await new Promise((resolve) => setTimeout(resolve, Math.min(50 * 2 ** Math.min(failures, 6), 2000)));
        continue;
      }
      for (const feed of tailed) {
        const entries = result.get(feed.key);
        // A feed dropped (and maybe made anew) while the read was under way is not this one any more.
        if (entries && entries.length > 0 && feeds.get(feed.key) === feed) deliver(feed, entries);
      }
    }
  };
  void loop();

  const leave = (feed: Feed, subscriber: Subscriber) => {
    feed.subscribers.delete(subscriber);
    // The tail stops reading it on its next round (no need to interrupt a read for that).
    if (feed.subscribers.size === 0 && feeds.get(feed.key) === feed) feeds.delete(feed.key);
  };

  const lastIdOf = async (key: string): Promise<StreamId> =>
    String(await commands.script(LAST_ID, [key], [], { ordered: true }));

  return {
    publish<T>(topic: string, payload: T): Promise<BusEvent<T>> {
      const key = keyOf(topic);
      let json: string | Error;
      try {
        json = JSON.stringify(payload) ?? "null";
      } catch (error) {
        json = error as Error; // reported below like any failed publish
      }
      const published = (
        typeof json !== "string"
          ? Promise.reject(json)
          : commands.script(
              PUBLISH,
              [key],
              [json, maxLen, retentionMs, options.wakeChannel ?? "", key, crypto.randomUUID()],
              { ordered: true },
            )
      ).then((id) => ({ id: toNumber(String(id)), topic, payload }));
      // Many publishers do not wait (`void bus.publish(...)`): a failure is logged, never unhandled.
      published.catch((error) => onError("bus: publish failed", { topic, error: String(error) }));
      return published;
    },

    subscribe<T>(topic: string, subscribeOptions: SubscribeOptions = {}) {
      const key = keyOf(topic);
      if (closed) {
        const done = new PushQueue<BusEvent>();
        done.end();
        return done as unknown as AsyncIterableIterator<BusEvent<T>>;
      }
      let feed = feeds.get(key);
      if (!feed) {
        feed = { topic, key, cursor: null, subscribers: new Set(), waiters: [] };
        feeds.set(key, feed);
      }
      const joined = feed;
      const subscriber: Subscriber = {
        queue: new PushQueue<BusEvent>(() => leave(joined, subscriber), subscribeOptions.signal),
        last: 0,
        backlog: [],
        resumed: subscribeOptions.after !== undefined,
      };
      joined.subscribers.add(subscriber);
      // Asked now, before this call returns: over one connection (or the ordered REST queue) it runs
      // before any publish this process makes afterwards, which the subscriber therefore receives.
      const { after } = subscribeOptions;
      let start: Promise<StreamId> =
        after !== undefined ? Promise.resolve().then(() => fromNumber(after)) : lastIdOf(key);
      const begin = async () => {
        for (let failures = 0; ; failures++) {
          try {
            const from = await start;
            if (subscriber.last === 0) subscriber.last = toNumber(from);
            await catchUp(joined, subscriber, from);
            return;
          } catch (error) {
            // An expired or malformed cursor is final; the store being unreachable is not: retry
            // (from the same start: what was delivered meanwhile is not delivered twice).
            if (error instanceof CursorExpiredError || error instanceof RangeError) throw error;
            if (closed || subscriber.queue.ended) return;
            if (failures === 0 || failures % 20 === 0)
              onError("bus: subscribing failed; retrying", { topic, error: String(error), failures });
            await new Promise((resolve) =>
              setTimeout(resolve, Math.min(100 * 2 ** Math.min(failures, 5), 3000)),
            );
            if (after === undefined) start = start.catch(() => lastIdOf(key));
          }
        }
      };
      void begin().catch((error) => subscriber.queue.fail(error));
      return subscriber.queue as unknown as AsyncIterableIterator<BusEvent<T>>;
    },

    async lastId(topic: string) {
      return toNumber(await lastIdOf(keyOf(topic)));
    },

    position(topic: string) {
      const cursor = feeds.get(keyOf(topic))?.cursor;
      return cursor ? toNumber(cursor) : undefined;
    },

    async waitFor(topic: string, id: number, timeoutMs: number) {
      const feed = feeds.get(keyOf(topic));
      if (!feed || feed.cursor === null || toNumber(feed.cursor) >= id) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        feed.waiters.push({
          id,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
        tail.poke?.(feed.key);
      });
      return true;
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const feed of [...feeds.values()])
        for (const subscriber of [...feed.subscribers]) subscriber.queue.end();
      feeds.clear();
      idle?.();
      await tail.close();
    },

    stats() {
      let subscribers = 0;
      for (const feed of feeds.values()) subscribers += feed.subscribers.size;
      return { topics: feeds.size, subscribers };
    },
  };
}
