// Run quotas on the in-process counters (what one instance uses): slots taken and given back, the
// day's run-seconds counted when runs end, a run's timeout capped by what is left, typed refusals, and
// the queue for a slot that explorations use (beginWhenFree).
import { expect, test } from "bun:test";
import { createMemoryRunCounters } from "../../api/run-counters.ts";
import { AppError } from "../../resolvers/errors.ts";
import { RunQuotas, secondsUntilUtcMidnight } from "../../resolvers/run-quota.ts";

const quotas = (userConcurrentRuns: number, userRunSecondsPerDay: number) =>
  new RunQuotas(createMemoryRunCounters(), {
    userConcurrentRuns,
    userRunSecondsPerDay,
    maxRunTimeoutMs: 600_000,
  });

async function refusal(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AppError);
  return error as AppError;
}

test("slots: the limit at once, given back when a run ends or never starts", async () => {
  const q = quotas(2, 3600);
  const first = await q.begin("u", null);
  const second = await q.begin("u", null);
  const third = await refusal(q.begin("u", null));
  expect(third.code).toBe("QUOTA_EXCEEDED");
  expect(third.details).toMatchObject({ scope: "concurrentRuns", limit: 2, used: 2 });
  expect(third.details!.retryAfterSeconds).toBeGreaterThan(0);
  // Another user is not affected.
  (await q.begin("someone else", null)).cancel();
  first.cancel();
  second.finish(1500);
  second.finish(1500); // twice counts once
  await Bun.sleep(0);
  expect(await q.runSecondsToday("u")).toBe(2);
  (await q.begin("u", null)).cancel();
  q.close();
});

test("run-seconds: a run lasts at most what is left of the day, then runs are refused until midnight UTC", async () => {
  const q = quotas(5, 10);
  const a = await q.begin("u", 60_000);
  expect(a.timeoutMs).toBe(10_000); // asked 60 s, 10 s left
  const b = await q.begin("u", 5_000);
  expect(b.timeoutMs).toBe(5_000); // asked less than is left: unchanged
  const c = await q.begin("u", null);
  expect(c.timeoutMs).toBe(10_000); // no timeout asked: the default (600 s) is more than is left
  a.finish(7_000);
  b.cancel();
  c.cancel();
  await Bun.sleep(0);
  expect((await q.begin("u", null)).timeoutMs).toBe(3_000);
  const d = await q.begin("u", null);
  d.finish(3_000);
  await Bun.sleep(0);
  const refused = await refusal(q.begin("u", null));
  expect(refused.details).toMatchObject({ scope: "runSeconds", limit: 10, used: 10 });
  expect(
    Math.abs((refused.details!.retryAfterSeconds as number) - secondsUntilUtcMidnight()),
  ).toBeLessThanOrEqual(1);
  q.close();
});

/** Whether the promise has settled by the time the event loop has turned a few times. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  for (let i = 0; i < 20; i++) await Bun.sleep(0);
  return done;
}

test("beginWhenFree queues for a slot: woken when a run of the user ends here, oldest waiter first", async () => {
  const q = quotas(1, 3600);
  const running = await q.begin("u", null);
  const first = q.beginWhenFree("u", null);
  const second = q.beginWhenFree("u", null);
  expect(await settled(first)).toBe(false);
  expect(await settled(second)).toBe(false);
  running.finish(10);
  expect(await settled(first)).toBe(true); // woken by the run's end, not by its retry 500 ms later
  const got = await first;
  expect(await settled(second)).toBe(false); // still only one slot
  got.cancel();
  (await second).cancel();
  q.close();
});

test("beginWhenFree sees slots freed on another instance, gives up after maxWaitMs, and refuses a used-up day at once", async () => {
  const counters = createMemoryRunCounters();
  const limits = { userConcurrentRuns: 1, userRunSecondsPerDay: 5, maxRunTimeoutMs: 600_000 };
  const here = new RunQuotas(counters, limits);
  const there = new RunQuotas(counters, limits);
  const elsewhere = await there.begin("u", null);
  const waiting = here.beginWhenFree("u", null);
  expect(await settled(waiting)).toBe(false);
  elsewhere.cancel(); // no wake-up reaches `here`: its retry finds the slot
  (await waiting).cancel();

  const held = await there.begin("u", null);
  const refused = await refusal(here.beginWhenFree("u", null, 800));
  expect(refused.details).toMatchObject({ scope: "concurrentRuns", limit: 1 });
  held.finish(5_000);
  await Bun.sleep(0);
  const day = await refusal(here.beginWhenFree("u", null));
  expect(day.details).toMatchObject({ scope: "runSeconds", limit: 5, used: 5 });
  here.close();
  there.close();
});

test("beginWhenFree ends with UNAVAILABLE when the server shuts down", async () => {
  const q = quotas(1, 3600);
  const running = await q.begin("u", null);
  const waiting = q.beginWhenFree("u", null);
  expect(await settled(waiting)).toBe(false);
  q.close();
  expect((await refusal(waiting)).code).toBe("UNAVAILABLE");
  running.cancel();
});
