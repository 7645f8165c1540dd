// The bus over Redis Streams, against a real redis-server: directly (ioredis, REDIS_URL) and through
// the fake Upstash REST server. Two bus objects stand for two server instances sharing one Redis.
import { describe, expect, test } from "bun:test";
import { Redis as Upstash } from "@upstash/redis";
import { type BusEvent, CursorExpiredError } from "../../bus/bus.ts";
import { connectRedis, createRedisBus } from "../../bus/redis.ts";
import { ioredisCommands, upstashCommands } from "../../bus/redis-commands.ts";
import type { StreamBus } from "../../bus/stream-bus.ts";
import { createUpstashBus } from "../../bus/upstash.ts";
import { useSharedBackends } from "../utils/shared-state.ts";

const shared = useSharedBackends();
const { skip } = shared;

interface Opened {
  bus: StreamBus;
  close(): Promise<void>;
}

type Options = { prefix?: string; maxLen?: number; retentionMs?: number };

const backends: Record<"redis" | "upstash", (options?: Options) => Opened> = {
  redis(options = {}) {
    const client = connectRedis(shared.redis.url);
    const bus = createRedisBus({
      client,
      commands: ioredisCommands(client),
      prefix: options.prefix ?? "t:",
      maxLen: options.maxLen ?? 1000,
      retentionMs: options.retentionMs ?? 60_000,
    });
    return {
      bus,
      async close() {
        await bus.close();
        client.disconnect();
      },
    };
  },
  upstash(options = {}) {
    const client = new Upstash({
      url: shared.upstash.url,
      token: shared.upstash.token,
      automaticDeserialization: false,
      enableAutoPipelining: false,
      enableTelemetry: false,
    });
    const bus = createUpstashBus({
      url: shared.upstash.url,
      token: shared.upstash.token,
      commands: upstashCommands(client),
      prefix: options.prefix ?? "t:",
      maxLen: options.maxLen ?? 1000,
      retentionMs: options.retentionMs ?? 60_000,
    });
    return { bus, close: () => bus.close() };
  },
};

async function take<T>(
  events: AsyncIterableIterator<BusEvent<T>>,
  n: number,
  ms = 10_000,
): Promise<BusEvent<T>[]> {
  const out: BusEvent<T>[] = [];
  const deadline = Date.now() + ms;
  while (out.length < n) {
    const next = await Promise.race([
      events.next(),
      Bun.sleep(Math.max(0, deadline - Date.now())).then(() => "timeout" as const),
    ]);
    if (next === "timeout") throw new Error(`only ${out.length} of ${n} events arrived`);
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

/** Nothing more arrives within `ms`. */
async function quiet(events: AsyncIterableIterator<BusEvent>, ms = 300): Promise<boolean> {
  const next = await Promise.race([events.next(), Bun.sleep(ms).then(() => "quiet" as const)]);
  return next === "quiet";
}

let topicCounter = 0;
const fresh = () => `topic-${++topicCounter}-${crypto.randomUUID().slice(0, 6)}`;

for (const kind of ["redis", "upstash"] as const) {
  describe.skipIf(skip)(`stream bus over ${kind}`, () => {
    const open = (options?: Options) => backends[kind](options);

    test("a subscriber gets what is published after it subscribed, in order, with increasing ids", async () => {
      const a = open();
      const topic = fresh();
      const sub = a.bus.subscribe<number>(topic);
      // Published right after subscribe() returned, by the same process: delivered.
      for (let i = 0; i < 20; i++) void a.bus.publish(topic, i);
      const got = await take(sub, 20);
      expect(got.map((e) => e.payload)).toEqual([...Array(20).keys()]);
      for (let i = 1; i < got.length; i++) expect(got[i]!.id).toBeGreaterThan(got[i - 1]!.id);
      expect(await quiet(sub)).toBe(true);
      await sub.return?.();
      await a.close();
    });

    test("events cross instances, and a new instance resumes after a cursor with no gap or repeat", async () => {
      const a = open();
      const b = open();
      const topic = fresh();
      // Across instances "from now" is only as precise as a cursor: B subscribes after A's latest id.
      const onB = b.bus.subscribe<string>(topic, { after: await a.bus.lastId(topic) });
      const published: BusEvent<string>[] = [];
      for (const word of ["one", "two", "three", "four"]) published.push(await a.bus.publish(topic, word));
      expect((await take(onB, 4)).map((e) => e.id)).toEqual(published.map((e) => e.id));
      expect(await a.bus.lastId(topic)).toBe(published[3]!.id);
      await onB.return?.();
      await b.close();

      // "B restarted": a new instance resumes after the second event.
      const c = open();
      const resumed = c.bus.subscribe<string>(topic, { after: published[1]!.id });
      await a.bus.publish(topic, "five");
      expect((await take(resumed, 3)).map((e) => e.payload)).toEqual(["three", "four", "five"]);
      expect(await quiet(resumed)).toBe(true);
      await resumed.return?.();
      await c.close();
      await a.close();
    });

    test("a late subscriber catches up while the topic is tailed, then goes live without duplicates", async () => {
      const a = open();
      const b = open();
      const topic = fresh();
      const first = b.bus.subscribe<number>(topic, { after: await a.bus.lastId(topic) });
      const ids: number[] = [];
      for (let i = 0; i < 10; i++) ids.push((await a.bus.publish(topic, i)).id);
      await take(first, 10);
      const late = b.bus.subscribe<number>(topic, { after: ids[3]! });
      for (let i = 10; i < 15; i++) void a.bus.publish(topic, i);
      expect((await take(late, 11)).map((e) => e.payload)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
      expect(await quiet(late)).toBe(true);
      expect((await take(first, 5)).map((e) => e.payload)).toEqual([10, 11, 12, 13, 14]);
      await late.return?.();
      await first.return?.();
      expect(b.bus.stats()).toEqual({ topics: 0, subscribers: 0 });
      await a.close();
      await b.close();
    });

    test("dropped connections lose nothing: every event arrives once, in order", async () => {
      const a = open();
      const b = open();
      const topic = fresh();
      const sub = b.bus.subscribe<number>(topic, { after: await a.bus.lastId(topic) });
      await a.bus.publish(topic, -1);
      await take(sub, 1);
      const sent: Promise<unknown>[] = [];
      for (let i = 0; i < 30; i++) {
        if (i === 10) {
          // Every client connection to Redis is cut (the fake's own too, so its SSE streams end).
          await shared.redis.cli("CLIENT", "KILL", "TYPE", "normal");
          if (kind === "upstash") shared.upstash.dropSubscriptions();
        }
        if (i === 20 && kind === "upstash") shared.upstash.dropSubscriptions();
        sent.push(a.bus.publish(topic, i));
        await Bun.sleep(5);
      }
      await Promise.all(sent);
      expect((await take(sub, 30, 20_000)).map((e) => e.payload)).toEqual([...Array(30).keys()]);
      expect(await quiet(sub, 500)).toBe(true);
      await sub.return?.();
      await a.close();
      await b.close();
    });

    test("a cursor older than what a topic retains is an explicit error", async () => {
      const a = open({ maxLen: 5 });
      const topic = fresh();
      const first = await a.bus.publish(topic, 0);
      // Approximate trimming drops whole stream nodes (100 entries by default): publish past several.
      for (let i = 1; i < 400; i++) void a.bus.publish(topic, i);
      await a.bus.publish(topic, 400);
      const stale = a.bus.subscribe(topic, { after: first.id });
      await expect(stale.next()).rejects.toBeInstanceOf(CursorExpiredError);
      // "Whatever is retained" (after: 0) is not an error; a cursor within retention resumes.
      const retained = a.bus.subscribe<number>(topic, { after: 0 });
      const got = await take(retained, 1);
      expect(got[0]!.payload).toBeGreaterThan(0);
      await retained.return?.();
      await a.close();

      // A topic idle longer than the retention expires; an old cursor for it is refused, too.
      const short = open({ retentionMs: 300 });
      const idle = fresh();
      const only = await short.bus.publish(idle, "x");
      await Bun.sleep(700);
      const late = short.bus.subscribe(idle, { after: only.id - 1 });
      await expect(late.next()).rejects.toBeInstanceOf(CursorExpiredError);
      await short.close();
    });

    test("one reader per process serves many topics, and ending subscriptions releases them", async () => {
      const clients = async () =>
        (await shared.redis.cli("CLIENT", "LIST", "TYPE", "normal")).split("\n").length;
      await Bun.sleep(200); // connections of the buses closed above are gone
      const before = await clients();
      const a = open({ prefix: "many:" });
      const names = Array.from({ length: 40 }, fresh);
      const subs = names.map((name) => a.bus.subscribe<string>(name));
      await Promise.all(names.map((name) => a.bus.publish(name, name)));
      for (const [i, sub] of subs.entries()) expect((await take(sub, 1))[0]!.payload).toBe(names[i]!);
      // 40 topics tailed: with Redis, this process holds two connections (commands, one blocking
      // reader); through Upstash's REST, one SSE stream.
      if (kind === "redis") expect((await clients()) - before).toBe(2);
      else expect(shared.upstash.stats().subscriptions).toBeGreaterThan(0);
      expect(a.bus.stats()).toEqual({ topics: 40, subscribers: 40 });
      for (const sub of subs) await sub.return?.();
      expect(a.bus.stats()).toEqual({ topics: 0, subscribers: 0 });
      await a.close();
    });
  });
}
