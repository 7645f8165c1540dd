import { expect, test } from "bun:test";
import { createMemoryBus } from "../../bus/memory.ts";

test("subscribers get events in order with monotonic ids per topic", async () => {
  const bus = createMemoryBus();
  const sub = bus.subscribe<number>("t");
  await bus.publish("t", 1);
  await bus.publish("other", 99);
  await bus.publish("t", 2);
  const a = await sub.next();
  const b = await sub.next();
  expect([a.value.payload, b.value.payload]).toEqual([1, 2]);
  // Time-based ids: larger, by 1 within one millisecond and by more across one.
  expect(b.value.id).toBeGreaterThan(a.value.id);
  await bus.close();
});

test("a subscriber resumes after the last id it saw, without gaps or repeats", async () => {
  const bus = createMemoryBus();
  const ids: number[] = [];
  for (const n of [1, 2, 3, 4]) ids.push((await bus.publish("t", n)).id);
  expect(await bus.lastId("t")).toBe(ids[3]!);
  const sub = bus.subscribe<number>("t", { after: ids[1]! });
  await bus.publish("t", 5);
  const seen: number[] = [];
  for (let i = 0; i < 3; i++) seen.push((await sub.next()).value.payload);
  expect(seen).toEqual([3, 4, 5]);
  await bus.close();
});

test("retained history is bounded", async () => {
  const bus = createMemoryBus({ historyPerTopic: 2 });
  for (const n of [1, 2, 3]) await bus.publish("t", n);
  const sub = bus.subscribe<number>("t", { after: 0 });
  expect((await sub.next()).value.payload).toBe(2);
  await bus.close();
});

test("abort and return end the subscription and release it", async () => {
  const bus = createMemoryBus({ historyPerTopic: 0 });
  const controller = new AbortController();
  const sub = bus.subscribe("t", { signal: controller.signal });
  const pending = sub.next();
  controller.abort();
  expect((await pending).done).toBe(true);
  const other = bus.subscribe("t");
  await other.return?.();
  expect((await other.next()).done).toBe(true);
  await bus.close();
});

test("ids stay monotonic after an idle topic is forgotten, and a fresh cursor sees later events", async () => {
  const bus = createMemoryBus({ historyPerTopic: 0 });
  const first = await bus.publish("t", 1);
  // With no history and no subscribers, the topic is gone; its next id must still be larger.
  const cursor = await bus.lastId("t");
  const sub = bus.subscribe<number>("t", { after: cursor });
  const second = await bus.publish("t", 2);
  expect(second.id).toBeGreaterThan(first.id);
  expect(second.id).toBeGreaterThan(cursor);
  expect((await sub.next()).value.payload).toBe(2);
  await bus.close();
});

test("a cursor older than the retained history is an explicit error, not a silent gap", async () => {
  const { CursorExpiredError } = await import("../../bus/bus.ts");
  const bus = createMemoryBus({ historyPerTopic: 2 });
  const first = await bus.publish("t", 1);
  for (const n of [2, 3, 4]) await bus.publish("t", n);
  await expect(bus.subscribe("t", { after: first.id }).next()).rejects.toBeInstanceOf(CursorExpiredError);
  // The newest retained cursor still resumes.
  const sub = bus.subscribe<number>("t", { after: (await bus.lastId("t")) - 1 });
  expect((await sub.next()).value.payload).toBe(4);
  await bus.close();
});
