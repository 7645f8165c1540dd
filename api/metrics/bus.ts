// The bus as this instance uses it, observed at its boundary: what this instance publishes (so runs
// and snapshots are counted from the session events the platform already publishes, by the instance
// that did the work, once) and what it delivers to its own subscribers (count and lag).
import { Counter, Histogram, type Registry } from "prom-client";
import type { Bus, BusEvent, SubscribeOptions } from "../../bus/bus.ts";

export type PublishListener = (topic: string, payload: unknown) => void;

/** Topic families (the part before ":"): a fixed set, so the label cannot grow. */
const FAMILIES = new Set(["user", "auth", "session", "run", "presence", "exploration", "agent"]);
const familyOf = (topic: string) => {
  const family = topic.slice(0, topic.indexOf(":"));
  return FAMILIES.has(family) ? family : "other";
};

export function observeBus(bus: Bus, registry: Registry, onPublish: PublishListener): Bus {
  const delivered = new Counter({
    name: "opencode_cloud_bus_events_delivered_total",
    help: "Bus events delivered to subscribers on this instance (one per subscriber), by topic family",
    labelNames: ["topic"],
    registers: [registry],
  });
  const lag = new Histogram({
    name: "opencode_cloud_bus_delivery_lag_seconds",
    help: "Time from an event's publication (its id carries the time in ms) to its delivery to a subscriber on this instance; replays of retained events are left out",
    labelNames: ["topic"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });

  function observed<T>(
    events: AsyncIterableIterator<BusEvent<T>>,
    topic: string,
  ): AsyncIterableIterator<BusEvent<T>> {
    const family = familyOf(topic);
    // Events published before the subscription began are replays (a resumed cursor): their age is
    // not a delivery delay. Clocks of other instances may differ by a few ms; those edge events only
    // move between "replay" and "live".
    const since = Date.now();
    const iterator: AsyncIterableIterator<BusEvent<T>> = {
      async next() {
        const result = await events.next();
        if (!result.done) {
          delivered.inc({ topic: family });
          const publishedAt = Math.floor(result.value.id / 1000);
          if (publishedAt >= since)
            lag.observe({ topic: family }, Math.max(0, Date.now() - publishedAt) / 1000);
        }
        return result;
      },
      return: (value?: unknown) =>
        events.return ? events.return(value) : Promise.resolve({ done: true, value: undefined }),
      throw: (error?: unknown) => (events.throw ? events.throw(error) : Promise.reject(error)),
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  const { waitFor, position } = bus;
  return {
    async publish<T>(topic: string, payload: T) {
      const event = await bus.publish(topic, payload);
      try {
        onPublish(topic, payload);
      } catch {
        // Counting must never fail a publication.
      }
      return event;
    },
    subscribe: <T>(topic: string, options?: SubscribeOptions) =>
      observed(bus.subscribe<T>(topic, options), topic),
    lastId: (topic) => bus.lastId(topic),
    ...(waitFor ? { waitFor: waitFor.bind(bus) } : {}),
    ...(position ? { position: position.bind(bus) } : {}),
    close: () => bus.close(),
  };
}
