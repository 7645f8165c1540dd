// What instances share, chosen once from config: the bus, the rate limiter and the run-quota counters,
// all in process (no REDIS_URL/Upstash: one instance, as `npm start` runs), on a Redis server through
// ioredis (REDIS_URL), or on Upstash's REST API through @upstash/redis.
import { Redis as UpstashRedis } from "@upstash/redis";
import type { Bus } from "../bus/bus.ts";
import { createMemoryBus } from "../bus/memory.ts";
import { connectRedis, createRedisBus } from "../bus/redis.ts";
import { ioredisCommands, type RedisCommands, upstashCommands } from "../bus/redis-commands.ts";
import { createUpstashBus } from "../bus/upstash.ts";
import type { Logger, RateLimiter } from "../resolvers/context.ts";
import type { RunCounters } from "../resolvers/run-quota.ts";
import type { Config } from "./config.ts";
import { createMemoryRateLimiter, createSharedRateLimiter } from "./limits.ts";
import { createMemoryRunCounters, createSharedRunCounters } from "./run-counters.ts";

export interface SharedState {
  kind: Config["shared"]["kind"];
  bus: Bus;
  rateLimiter: RateLimiter;
  runCounters: RunCounters;
  /** The shared store's commands (cluster leases use them); null in process. */
  commands: RedisCommands | null;
  /** Whether the shared store answers (always true in process). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export function createSharedState(config: Config, log: Logger): SharedState {
  const { shared, sharedKeys } = config;
  const onError = (message: string, fields: Record<string, unknown>) => log.warn(message, fields);
  const streams = {
    prefix: sharedKeys.prefix,
    maxLen: sharedKeys.busRetentionEvents,
    retentionMs: sharedKeys.busRetentionMs,
    onError,
  };
  const onStore = (commands: RedisCommands) => ({
    commands,
    rateLimiter: createSharedRateLimiter(commands, sharedKeys.prefix),
    runCounters: createSharedRunCounters(commands, sharedKeys.prefix),
    ping: () =>
      commands.call(["PING"]).then(
        (reply) => String(reply) === "PONG",
        () => false,
      ),
  });

  if (shared.kind === "redis") {
    const client = connectRedis(shared.url);
    const commands = ioredisCommands(client);
    const bus = createRedisBus({ client, commands, ...streams });
    return {
      kind: "redis",
      bus,
      ...onStore(commands),
      async close() {
        await bus.close();
        await client.quit().catch(() => client.disconnect());
      },
    };
  }

  if (shared.kind === "upstash") {
    const redis = new UpstashRedis({
      url: shared.url,
      token: shared.token,
      // Payloads are JSON this side encodes; batching is explicit (ordered publishes).
      automaticDeserialization: false,
      enableAutoPipelining: false,
      enableTelemetry: false,
    });
    const commands = upstashCommands(redis);
    const bus = createUpstashBus({ url: shared.url, token: shared.token, commands, ...streams });
    return { kind: "upstash", bus, ...onStore(commands), close: () => bus.close() };
  }

  const bus = createMemoryBus();
  return {
    kind: "memory",
    bus,
    commands: null,
    rateLimiter: createMemoryRateLimiter(),
    runCounters: createMemoryRunCounters(),
    ping: async () => true,
    close: () => bus.close(),
  };
}
