// The in-process bus: fan-out to local subscribers, with a short retained history per topic for resume.
// History is bounded in count and age (resume is for reconnect gaps, not replay), so idle topics vanish.
// Every retained event remembers the id before it, so a resume past what was pruned is detected.
import { type Bus, type BusEvent, CursorExpiredError, type SubscribeOptions } from "./bus.ts";
import { PushQueue } from "./queue.ts";

interface Retained {
  event: BusEvent;
  /** The id of the topic's event before this one (0: none). */
  prev: number;
  at: number;
}

interface Topic {
  lastId: number;
  history: Retained[];
  subscribers: Set<PushQueue<BusEvent>>;
}

export interface MemoryBusOptions {
  historyPerTopic?: number;
  historyMs?: number;
}

export function createMemoryBus(options: MemoryBusOptions = {}): Bus {
  const historyLimit = options.historyPerTopic ?? 500;
  const historyMs = options.historyMs ?? 5 * 60_000;
  const topicsByName = new Map<string, Topic>();

  const prune = (name: string, topic: Topic, now: number) => {
    while (topic.history.length > 0 && now - topic.history[0]!.at > historyMs) topic.history.shift();
    if (topic.subscribers.size === 0 && topic.history.length === 0) topicsByName.delete(name);
  };

  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const [name, topic] of topicsByName) prune(name, topic, now);
  }, 60_000);
  (sweeper as { unref?: () => void }).unref?.();

  const topicOf = (name: string): Topic => {
    let topic = topicsByName.get(name);
    if (!topic) {
      topic = { lastId: 0, history: [], subscribers: new Set() };
      topicsByName.set(name, topic);
    }
    return topic;
  };

  return {
    async publish<T>(name: string, payload: T) {
      const topic = topicOf(name);
      const prev = topic.lastId;
      // Time-based ids stay monotonic even after an idle topic was forgotten (or the process restarted).
      topic.lastId = Math.max(topic.lastId + 1, Date.now() * 1000);
      const event: BusEvent<T> = { id: topic.lastId, topic: name, payload };
      if (historyLimit > 0) {
        topic.history.push({ event, prev, at: Date.now() });
        if (topic.history.length > historyLimit) topic.history.shift();
      }
      for (const subscriber of topic.subscribers) subscriber.push(event);
      return event;
    },

    subscribe<T>(name: string, options: SubscribeOptions = {}) {
      const known = topicsByName.has(name);
      const topic = topicOf(name);
      const queue: PushQueue<BusEvent> = new PushQueue(() => {
        topic.subscribers.delete(queue);
        prune(name, topic, Date.now());
      }, options.signal);
      const { after } = options;
      if (after !== undefined) {
        const missed = topic.history.filter(({ event }) => event.id > after);
        // A cursor (other than 0, "whatever is retained") resumes only if nothing after it was pruned.
        const gap =
          after > 0 &&
          (missed.length > 0
            ? missed[0]!.prev > after
            : topic.lastId > after || (!known && Date.now() * 1000 - after > historyMs * 1000));
        if (gap) {
          queue.fail(new CursorExpiredError(name, after));
          return queue as unknown as AsyncIterableIterator<BusEvent<T>>;
        }
        for (const { event } of missed) queue.push(event);
      }
      topic.subscribers.add(queue);
      return queue as unknown as AsyncIterableIterator<BusEvent<T>>;
    },

    async lastId(name: string) {
      // For a topic with nothing retained, "now" is a cursor every later event passes.
      return topicsByName.get(name)?.lastId ?? Date.now() * 1000 - 1;
    },

    async close() {
      clearInterval(sweeper);
      for (const topic of topicsByName.values()) for (const s of [...topic.subscribers]) s.end();
      topicsByName.clear();
    },
  };
}
