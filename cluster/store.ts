// The shared record of who is alive and who owns which branch, in Redis or Upstash: one key per live
// instance (its URL, with a TTL its heartbeat renews) and one lease per owned branch (the owner's id,
// `SET NX PX`, renewed by the same heartbeat with a compare-and-extend script). Every change is one
// script, so two instances never both think they hold a lease. With no shared store there is one
// instance and no store at all (cluster/ownership.ts then keeps everything local).
import { type Arg, lua, type RedisCommands } from "../bus/redis-commands.ts";

export interface ClusterStore {
  /**
   * Says this instance is alive for `ttlMs` more and extends every lease in `branchIds` it still
   * holds; returns the ones it no longer holds (expired and taken, or released by someone else).
   */
  heartbeat(instance: { id: string; url: string }, branchIds: string[], ttlMs: number): Promise<string[]>;
  /** A live instance's URL; null when it is gone (stopped, or its heartbeat expired). */
  instanceUrl(instanceId: string): Promise<string | null>;
  /**
   * Takes the branch's lease for `instanceId` when it is free, expired, or held by an instance that
   * is gone; returns the holder afterwards (`instanceId` itself when taken or already held).
   */
  acquire(branchId: string, instanceId: string, ttlMs: number): Promise<string>;
  /** The lease's holder now, or null. */
  holder(branchId: string): Promise<string | null>;
  /** Gives a lease up, only if `instanceId` holds it. */
  release(branchId: string, instanceId: string): Promise<void>;
  /** Removes the instance's own key (graceful stop). */
  leave(instanceId: string): Promise<void>;
}

// KEYS: the instance key, then the leases. ARGV: id, url, ttl.
const HEARTBEAT = lua(`
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
local lost = {}
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
  else
    table.insert(lost, i - 1)
  end
end
return lost
`);

// KEYS: the lease. ARGV: id, ttl, the prefix of instance keys.
const ACQUIRE = lua(`
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return holder
end
if holder and redis.call('EXISTS', ARGV[3] .. holder) == 1 then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
`);

// KEYS: the lease. ARGV: id.
const RELEASE = lua(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

/** The store over the shared state's Redis/Upstash commands (its connection, closed by its owner). */
export function redisClusterStore(commands: RedisCommands, prefix: string): ClusterStore {
  const instanceKey = (id: string) => `${prefix}cluster:instance:${id}`;
  const leaseKey = (branchId: string) => `${prefix}cluster:lease:${branchId}`;
  const text = (value: unknown) => (value === null || value === undefined ? null : String(value));
  return {
    async heartbeat(instance, branchIds, ttlMs) {
      const keys = [instanceKey(instance.id), ...branchIds.map(leaseKey)];
      const args: Arg[] = [instance.id, instance.url, ttlMs];
      const lost = (await commands.script(HEARTBEAT, keys, args)) as (number | string)[] | null;
      return (lost ?? []).map((i) => branchIds[Number(i) - 1]!);
    },
    async instanceUrl(instanceId) {
      return text(await commands.call(["GET", instanceKey(instanceId)]));
    },
    async acquire(branchId, instanceId, ttlMs) {
      const holder = await commands.script(
        ACQUIRE,
        [leaseKey(branchId)],
        [instanceId, ttlMs, instanceKey("")],
      );
      return String(holder);
    },
    async holder(branchId) {
      return text(await commands.call(["GET", leaseKey(branchId)]));
    },
    async release(branchId, instanceId) {
      await commands.script(RELEASE, [leaseKey(branchId)], [instanceId]);
    },
    async leave(instanceId) {
      await commands.call(["DEL", instanceKey(instanceId)]);
    },
  };
}
