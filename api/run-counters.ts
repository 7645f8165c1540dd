// The counters run quotas are kept in (resolvers/run-quota.ts): in memory for one process, or in
// Redis/Upstash, where each change is one Lua script (atomic across instances, one billed command).
// Slots are sorted sets scored by lease expiry (server clock), so expired leases drop out on the next
// acquire; run-seconds are integers with a time to live.
import { type Arg, lua, type RedisCommands } from "../bus/redis-commands.ts";
import type { RunCounters } from "../resolvers/run-quota.ts";

export function createMemoryRunCounters(): RunCounters {
  const slots = new Map<string, Map<string, number>>();
  const totals = new Map<string, { value: number; expiresAt: number }>();
  const live = (key: string, now: number) => {
    const leases = slots.get(key) ?? new Map<string, number>();
    for (const [member, until] of leases) if (until <= now) leases.delete(member);
    if (leases.size === 0) slots.delete(key);
    return leases;
  };
  return {
    async acquire(key, member, limit, leaseMs) {
      const now = Date.now();
      const leases = live(key, now);
      if (leases.size >= limit) return { ok: false, held: leases.size };
      leases.set(member, now + leaseMs);
      slots.set(key, leases);
      return { ok: true, held: leases.size };
    },
    async renew(key, members, leaseMs) {
      const leases = slots.get(key);
      for (const member of members) if (leases?.has(member)) leases.set(member, Date.now() + leaseMs);
    },
    async release(key, member) {
      const leases = slots.get(key);
      leases?.delete(member);
      if (leases?.size === 0) slots.delete(key);
    },
    async add(key, amount, ttlMs) {
      const now = Date.now();
      const total = totals.get(key);
      const next =
        total && total.expiresAt > now
          ? { ...total, value: total.value + amount }
          : { value: amount, expiresAt: now + ttlMs };
      totals.set(key, next);
      for (const [k, t] of totals) if (t.expiresAt <= now) totals.delete(k);
      return next.value;
    },
    async get(key) {
      const total = totals.get(key);
      return total && total.expiresAt > Date.now() ? total.value : 0;
    },
  };
}

const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** KEYS[1] slots; ARGV member, limit, lease ms. Returns {1|0, leases held}. */
const ACQUIRE = lua(`${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[2]) then return {0, held} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, held + 1}
`);

/** KEYS[1] slots; ARGV lease ms, members... Extends the leases still held. */
const RENEW = lua(`${NOW}
local expiry = now + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i]) end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
`);

/** KEYS[1] counter; ARGV amount, ttl ms (set when the counter is created). Returns the new value. */
const ADD = lua(`
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
`);

export function createSharedRunCounters(commands: RedisCommands, prefix: string): RunCounters {
  const k = (key: string) => `${prefix}${key}`;
  const run = (script: ReturnType<typeof lua>, key: string, args: Arg[]) =>
    commands.script(script, [k(key)], args);
  return {
    async acquire(key, member, limit, leaseMs) {
      const [ok, held] = (await run(ACQUIRE, key, [member, limit, leaseMs])) as [number, number];
      return { ok: Number(ok) === 1, held: Number(held) };
    },
    async renew(key, members, leaseMs) {
      if (members.length > 0) await run(RENEW, key, [leaseMs, ...members]);
    },
    async release(key, member) {
      await commands.call(["ZREM", k(key), member]);
    },
    async add(key, amount, ttlMs) {
      return Number(await run(ADD, key, [amount, ttlMs]));
    },
    async get(key) {
      return Number((await commands.call(["GET", k(key)])) ?? 0);
    },
  };
}
