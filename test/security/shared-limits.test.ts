// Limits counted in Redis are atomic across instances: many clients (standing for instances) hitting
// one counter at once never let more through than the limit, on a real redis-server and through the
// fake Upstash REST server in front of it. Run-quota slots likewise, and expired leases free their slot.
import { describe, expect, test } from "bun:test";
import { Redis as Upstash } from "@upstash/redis";
import { createSharedRateLimiter } from "../../api/limits.ts";
import { createSharedRunCounters } from "../../api/run-counters.ts";
import { connectRedis } from "../../bus/redis.ts";
import { ioredisCommands, type RedisCommands, upstashCommands } from "../../bus/redis-commands.ts";
import { useSharedBackends } from "../utils/shared-state.ts";

const closers: (() => void)[] = [];
const shared = useSharedBackends(() => {
  for (const close of closers) close();
});
const { skip } = shared;

const clients: Record<"redis" | "upstash", () => RedisCommands> = {
  redis() {
    const client = connectRedis(shared.redis.url);
    closers.push(() => client.disconnect());
    return ioredisCommands(client);
  },
  upstash: () =>
    upstashCommands(
      new Upstash({
        url: shared.upstash.url,
        token: shared.upstash.token,
        automaticDeserialization: false,
        enableAutoPipelining: false,
        enableTelemetry: false,
      }),
    ),
};

for (const kind of ["redis", "upstash"] as const) {
  describe.skipIf(skip)(`shared limits over ${kind}`, () => {
    test("three instances racing on one counter let exactly the limit through", async () => {
      const limiters = [0, 1, 2].map(() => createSharedRateLimiter(clients[kind](), `${kind}-race:`));
      const key = `login:victim-${crypto.randomUUID()}@example.com`;
      const results = await Promise.all(
        Array.from({ length: 90 }, (_, i) => limiters[i % 3]!.consume(key, 25, 60_000)),
      );
      expect(results.filter((r) => r.ok)).toHaveLength(25);
      const refused = results.filter((r) => !r.ok);
      expect(refused).toHaveLength(65);
      for (const r of refused) {
        expect(r.retryAfterMs).toBeGreaterThan(0);
        expect(r.retryAfterMs).toBeLessThanOrEqual(60_000);
      }
    });

    test("a window ends: the counter starts again after it", async () => {
      const limiter = createSharedRateLimiter(clients[kind](), `${kind}-window:`);
      const key = `k-${crypto.randomUUID()}`;
      expect((await limiter.consume(key, 1, 300)).ok).toBe(true);
      expect((await limiter.consume(key, 1, 300)).ok).toBe(false);
      await Bun.sleep(400);
      expect((await limiter.consume(key, 1, 300)).ok).toBe(true);
    });

    test("several counters in one call: refused when any is over, with the longest wait", async () => {
      const limiter = createSharedRateLimiter(clients[kind](), `${kind}-all:`);
      const user = `user-${crypto.randomUUID()}`;
      const key = `key-${crypto.randomUUID()}`;
      const hits = [
        { key: user, limit: 100, windowMs: 60_000 },
        { key, limit: 2, windowMs: 30_000 },
      ];
      expect((await limiter.consumeAll(hits)).ok).toBe(true);
      expect((await limiter.consumeAll(hits)).ok).toBe(true);
      const third = await limiter.consumeAll(hits);
      expect(third.ok).toBe(false);
      expect(third.retryAfterMs).toBeGreaterThan(20_000);
      expect(third.retryAfterMs).toBeLessThanOrEqual(30_000);
    });

    test("run slots: racing acquires take exactly the limit; released and expired slots come back", async () => {
      const counters = [0, 1].map(() => createSharedRunCounters(clients[kind](), `${kind}-runs:`));
      const key = `quota:runs:${crypto.randomUUID()}`;
      const taken = await Promise.all(
        Array.from({ length: 12 }, (_, i) => counters[i % 2]!.acquire(key, `m${i}`, 3, 400)),
      );
      const held = taken.map((r, i) => (r.ok ? `m${i}` : null)).filter(Boolean) as string[];
      expect(held).toHaveLength(3);
      expect(taken.filter((r) => !r.ok).every((r) => r.held === 3)).toBe(true);
      await counters[1]!.release(key, held[0]!);
      expect((await counters[0]!.acquire(key, "after-release", 3, 400)).ok).toBe(true);
      expect((await counters[0]!.acquire(key, "one-too-many", 3, 400)).ok).toBe(false);
      // Renewed leases hold; the others expire (their instance died) and free their slots.
      await counters[0]!.renew(key, [held[1]!], 5_000);
      await Bun.sleep(500);
      expect((await counters[1]!.acquire(key, "x", 3, 400)).ok).toBe(true);
      expect((await counters[1]!.acquire(key, "y", 3, 400)).ok).toBe(true);
      expect((await counters[1]!.acquire(key, "z", 3, 400)).ok).toBe(false);
      // Run-seconds add up across instances.
      const day = `quota:run-seconds:${crypto.randomUUID()}`;
      await Promise.all([counters[0]!.add(day, 2, 60_000), counters[1]!.add(day, 3, 60_000)]);
      expect(await counters[0]!.get(day)).toBe(5);
    });
  });
}
