// The access watch on its own (resolvers/access-watch.ts), with the in-process bus and a scripted
// role lookup: what the end-to-end tests cannot pin down in time, a value arriving while a recheck
// is still under way, and that an ended watch holds nothing.
import { expect, test } from "bun:test";
import { topics } from "../../bus/bus.ts";
import { createMemoryBus } from "../../bus/memory.ts";
import type { Db } from "../../db/client.ts";
import type { Role } from "../../db/schema.ts";
import { AccessWatchHub, busUntil, untilAccessLost } from "../../resolvers/access-watch.ts";
import type { Logger, Viewer } from "../../resolvers/context.ts";
import type { AppError } from "../../resolvers/errors.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const tokenViewer = (issuedAt: number): Viewer => ({
  userId: "usr_a",
  credential: { kind: "token", expiresAt: Date.now() + 3600_000, issuedAt },
});
const viewer = tokenViewer(Date.now());

/** A hub whose role lookups answer what the test says, when the test says. */
function scriptedHub() {
  const bus = createMemoryBus();
  const lookups: { resolve: (role: Role | null) => void }[] = [];
  const hub = new AccessWatchHub({ db: null as unknown as Db, bus, log: quiet });
  hub.roleOf = () => new Promise((resolve) => lookups.push({ resolve }));
  return { bus, hub, lookups };
}

type Item = { value: number } | { error: string };

async function watched(bus: ReturnType<typeof createMemoryBus>, hub: AccessWatchHub) {
  const live = hub.open(viewer);
  live.need("ses_1", "VIEWER");
  const scoped = busUntil(bus, live.signal);
  const source = (async function* () {
    for await (const { payload } of scoped.subscribe<number>("values")) yield { value: payload } as Item;
  })();
  const stream = untilAccessLost<Item>(source, live, (e: AppError) => ({ error: e.code }));
  return { live, stream };
}

test("a value published while a recheck runs waits for it, and is dropped when access was lost", async () => {
  const { bus, hub, lookups } = scriptedHub();
  const { stream } = await watched(bus, hub);
  const first = stream.next(); // starts the source (it subscribes on its first pull)
  await bus.publish("values", 1);
  expect((await first).value).toEqual({ value: 1 });

  await bus.publish(topics.session("ses_1"), {
    kind: "MEMBER_CHANGED",
    sessionId: "ses_1",
    userId: "usr_a",
    at: 0,
  });
  await Bun.sleep(10); // the recheck has started and waits for its lookup
  expect(lookups.length).toBe(1);
  await bus.publish("values", 2); // e.g. the owner's next command, after the removal
  const next = stream.next();
  await Bun.sleep(20);
  lookups[0]!.resolve(null);
  expect((await next).value).toEqual({ error: "NOT_FOUND" });
  expect((await stream.next()).done).toBe(true);
  expect(hub.watching).toBe(0);
  await hub.close();
  await bus.close();
});

test("a role still high enough lets values through; a lower one ends with FORBIDDEN", async () => {
  const { bus, hub, lookups } = scriptedHub();
  const live = hub.open(viewer);
  live.need("ses_1", "EDITOR");
  const source = (async function* () {
    for await (const { payload } of busUntil(bus, live.signal).subscribe<number>("values"))
      yield { value: payload } as Item;
  })();
  const stream = untilAccessLost<Item>(source, live, (e: AppError) => ({ error: e.code }));
  const changed = { kind: "MEMBER_CHANGED", sessionId: "ses_1", userId: "usr_a", at: 0 };
  const first = stream.next(); // starts the source (it subscribes on its first pull)

  await bus.publish(topics.session("ses_1"), changed);
  await Bun.sleep(10);
  lookups[0]!.resolve("OWNER");
  await bus.publish("values", 1);
  expect((await first).value).toEqual({ value: 1 });

  await bus.publish(topics.session("ses_1"), changed);
  await Bun.sleep(10);
  lookups[1]!.resolve("VIEWER");
  expect((await stream.next()).value).toEqual({ error: "FORBIDDEN" });
  await hub.close();
  await bus.close();
});

test("another user's change is not a recheck; ending the stream releases the watch and the source", async () => {
  const { bus, hub, lookups } = scriptedHub();
  const { live, stream } = await watched(bus, hub);
  await bus.publish(topics.session("ses_1"), {
    kind: "MEMBER_CHANGED",
    sessionId: "ses_1",
    userId: "usr_b",
    at: 0,
  });
  await bus.publish(topics.accessRevoked, { sessionId: "ses_1", userId: "usr_b" });
  await Bun.sleep(10);
  expect(lookups.length).toBe(0);
  const pending = stream.next(); // waiting on the bus, as a quiet subscription does
  await stream.return?.();
  expect(live.signal.aborted).toBe(true);
  expect((await pending).done).toBe(true); // the source's bus subscription ended with it
  expect(hub.watching).toBe(0);
  await hub.close();
  await bus.close();
});

test("signing out everywhere ends token subscriptions issued before the cut, not later ones", async () => {
  const { bus, hub } = scriptedHub();
  const before = await watched(bus, hub);
  const later = hub.open(tokenViewer(Date.now() + 1000));
  await bus.publish(topics.tokensRevoked, { userId: "usr_a", before: Date.now() + 500 });
  expect((await before.stream.next()).value).toEqual({ error: "UNAUTHENTICATED" });
  expect(later.lostError).toBeNull();
  later.end();
  expect(hub.watching).toBe(0);
  await hub.close();
  await bus.close();
});
